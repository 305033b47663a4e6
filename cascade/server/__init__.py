"""The OpenAI-compatible gateway (``cascade serve``): Starlette on uvicorn, one model per
policy file. Needs the ``server`` extra (``pip install 'cascade[server]'``)."""

from cascade.server._app import Gateway, create_app, error_response
from cascade.server._config import (
    ApiKeys,
    GatewayConfig,
    GatewayConfigError,
    KeySpec,
    MetricsAccess,
    ModelRule,
    RefuseRule,
    TierRule,
    hash_key,
    load_gateway_config,
)
from cascade.server._metrics import install_meter_provider, render_metrics
from cascade.server._models import Served, check_policies, load_models, parse_router_name
from cascade.server._run import serve
from cascade.server._schema import ChatRequest, GatewayRequestError, parse_chat_request

__all__ = [
    "ApiKeys",
    "ChatRequest",
    "Gateway",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayRequestError",
    "KeySpec",
    "MetricsAccess",
    "ModelRule",
    "RefuseRule",
    "Served",
    "TierRule",
    "check_policies",
    "create_app",
    "error_response",
    "hash_key",
    "install_meter_provider",
    "load_gateway_config",
    "load_models",
    "parse_chat_request",
    "parse_router_name",
    "render_metrics",
    "serve",
]
