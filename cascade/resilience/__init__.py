"""Resilience: the call seam every model call passes through, deployments with bulkheads and
load balancing, circuit breakers, retries (tenacity), retry budgets and spending budgets."""

from cascade.resilience._deployments import Bulkhead, Deployment, DeploymentState, Latency, Target
from cascade.resilience._runtime import DeploymentHealth, Resilience
from cascade.resilience._seam import RunScope, call_model

__all__ = [
    "Bulkhead",
    "Deployment",
    "DeploymentHealth",
    "DeploymentState",
    "Latency",
    "Resilience",
    "RunScope",
    "Target",
    "call_model",
]
