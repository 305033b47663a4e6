"""The two programs that run inside the sandboxes (``python -I -S -c <this file> ROLE ...``).

Standard library only: it runs in a bare interpreter with no site-packages. Never imported by
the engine except to read its source.

- ``answer``: runs the model-written code once, then serves calls on it over two pipe fds:
  each request names a handle (a top-level name's object, or one returned earlier) and an
  operation (call, attribute, operator); each reply is plain data or a new handle.
- ``tests``: runs each test statement in its own namespace where the answer's names are
  proxies that forward to the ``answer`` process, and writes one verdict line per test to
  its stdout (which the answer cannot reach: it is another process in another PID
  namespace, and the answer's replies decode to plain data only).

So the answer can patch anything in its own interpreter, print anything and exit any way it
likes: the verdict is computed and written by a process it never runs in.
"""

import json
import os
import resource
import sys

MAX_MESSAGE = 1 << 20  # bytes per request / reply line
MAX_ITEMS = 100_000  # values per encoded reply
MAX_DEPTH = 64
SCALARS = (type(None), bool, int, str)


def limits(cpu_s: int, memory: int, nproc: int, fsize: int, nofile: int) -> None:
    for what, value in ((resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_AS, memory),
                        (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_FSIZE, fsize),
                        (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(what, (value, value))


class TooBig(Exception):
    pass


# --- the value codec: tagged JSON, exact builtin types only ---------------------------------


def encode(value, handle, budget, depth=0):
    """Plain data as tagged JSON; anything else (functions, classes, instances, subclasses
    of builtins) through ``handle(value) -> int``."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise TooBig()
    kind = type(value)
    if kind in SCALARS:
        if kind is int and abs(value).bit_length() > 4000:
            raise TooBig()
        return value
    if kind is float:
        return {"f": repr(value)}
    if kind is complex:
        return {"c": [repr(value.real), repr(value.imag)]}
    if kind is bytes:
        return {"b": value.hex()}
    tags = {list: "l", tuple: "t", set: "s", frozenset: "fs"}
    if kind in tags:
        return {tags[kind]: [encode(v, handle, budget, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode(k, handle, budget, depth + 1), encode(v, handle, budget, depth + 1)]
                      for k, v in value.items()]}
    return {"h": handle(value)}


def decode(data, remote, depth=0):
    """The inverse of ``encode``: builtin values only; ``remote(id)`` for a handle."""
    if depth > MAX_DEPTH:
        raise TooBig()
    if type(data) in SCALARS:
        return data
    if type(data) is not dict or len(data) != 1:
        raise ValueError("malformed value")
    ((tag, body),) = data.items()
    if tag == "f":
        return float(body)
    if tag == "c":
        return complex(float(body[0]), float(body[1]))
    if tag == "b":
        return bytes.fromhex(body)
    if tag == "h":
        if type(body) is not int:
            raise ValueError("malformed handle")
        return remote(body)
    if tag == "d":
        return {decode(k, remote, depth + 1): decode(v, remote, depth + 1) for k, v in body}
    kinds = {"l": list, "t": tuple, "s": set, "fs": frozenset}
    if tag not in kinds or type(body) is not list:
        raise ValueError("malformed value")
    return kinds[tag](decode(v, remote, depth + 1) for v in body)


def read_line(stream):
    line = stream.readline(MAX_MESSAGE + 1)
    if not line:
        raise EOFError()
    if len(line) > MAX_MESSAGE:
        raise TooBig()
    return json.loads(line)


def write_line(stream, message):
    stream.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    stream.flush()


# --- the answer side ------------------------------------------------------------------------


def serve_answer(code, requests, replies):
    import operator

    objects = {}

    def handle(value):
        objects[len(objects) + 1] = value
        return len(objects)

    def reply(value):
        try:
            return {"ok": encode(value, handle, [MAX_ITEMS])}
        except TooBig:
            return {"ok": {"h": handle(value)}}

    scope = {"__name__": "__answer__"}
    try:
        exec(compile(code, "<answer>", "exec"), scope)
    except BaseException as exc:  # the answer's own failure, exit() included
        write_line(replies, {"loaded": False, "error": type(exc).__name__})
        return
    names = {}
    for name, value in list(scope.items()):
        if name.startswith("__"):
            continue
        if isinstance(value, type(sys)):
            names[name] = {"m": str(getattr(value, "__name__", ""))}
        else:
            names[name] = reply(value)["ok"]
    write_line(replies, {"loaded": True, "names": names})
    while True:
        try:
            request = read_line(requests)
        except EOFError:
            return
        try:
            args = [decode(a, objects.__getitem__) for a in request.get("args", [])]
            kwargs = {k: decode(v, objects.__getitem__) for k, v in request.get("kwargs", {}).items()}
            match request["op"]:
                case "call":
                    result = args[0](*args[1:], **kwargs)
                case "getattr":
                    result = getattr(args[0], args[1])
                case "setattr":
                    result = setattr(args[0], args[1], args[2])
                case "list":
                    result = list(args[0])
                case "repr":
                    result = repr(args[0])
                case "str":
                    result = str(args[0])
                case "bool":
                    result = bool(args[0])
                case "hash":
                    result = hash(args[0])
                case "len":
                    result = len(args[0])
                case name:
                    result = getattr(operator, name)(*args)
            out = reply(result)
        except BaseException as exc:  # the answer's own failure, exit() included
            out = {"error": type(exc).__name__, "message": str(exc)[:500]}
        write_line(replies, out)


# --- the tests side -------------------------------------------------------------------------


class RemoteError(Exception):
    """The answer raised an exception that is not a builtin one, or broke the protocol."""


def tests_client(requests, replies):
    import builtins

    def remote(handle):
        proxy = object.__new__(Remote)
        object.__setattr__(proxy, "_h", handle)
        return proxy

    def send(op, *args, **kwargs):
        budget = [MAX_ITEMS]
        try:
            message = {"op": op, "args": [encode(a, refuse, budget) for a in args],
                       "kwargs": {k: encode(v, refuse, budget) for k, v in kwargs.items()}}
        except TooBig:
            raise RemoteError("arguments too large for the answer") from None
        try:
            write_line(requests, message)
            answer = read_line(replies)
        except (EOFError, BrokenPipeError):
            raise RemoteError("the answer's process ended") from None
        except (TooBig, ValueError, RecursionError):
            raise RemoteError("the answer's process sent an unreadable reply") from None
        if type(answer) is not dict:
            raise RemoteError("the answer's process sent an unreadable reply")
        if "error" in answer:
            kind = getattr(builtins, str(answer["error"]), None)
            message = str(answer.get("message", ""))
            if isinstance(kind, type) and issubclass(kind, Exception) and kind is not RemoteError:
                raise kind(message)
            raise RemoteError(f"{answer['error']}: {message}")
        try:
            return decode(answer.get("ok"), remote)
        except (TooBig, ValueError, TypeError, KeyError, RecursionError):
            raise RemoteError("the answer's process sent an unreadable reply") from None

    def refuse(value):
        if type(value) is Remote:
            return object.__getattribute__(value, "_h")
        raise TypeError(f"cannot pass a {type(value).__name__} to the answer")

    def op(name):
        return lambda self, *args: send(name, self, *args)

    def reflected(name):
        return lambda self, other: send(name, other, self)

    class Remote:
        __slots__ = ("_h",)

        def __call__(self, *args, **kwargs):
            return send("call", self, *args, **kwargs)

        def __getattr__(self, name):
            return send("getattr", self, name)

        def __setattr__(self, name, value):
            send("setattr", self, name, value)

        def __iter__(self):
            return iter(send("list", self))

        def __len__(self):
            value = send("len", self)
            if type(value) is not int:
                raise TypeError("len() of the answer's object is not an int")
            return value

        def __bool__(self):
            return send("bool", self) is True

        def __repr__(self):
            return str(send("repr", self))

        def __str__(self):
            return str(send("str", self))

        def __hash__(self):
            value = send("hash", self)
            return value if type(value) is int else 0

    for name in ("eq", "ne", "lt", "le", "gt", "ge", "getitem", "setitem", "delitem",
                 "contains", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg",
                 "pos", "abs", "and_", "or_", "xor", "lshift", "rshift", "invert", "index"):
        setattr(Remote, f"__{name.rstrip('_')}__", op(name))
    for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and_", "or_", "xor"):
        setattr(Remote, f"__r{name.rstrip('_')}__", reflected(name))
    return send, remote


def run_tests(tests, requests, replies, verdicts):
    import importlib

    _, remote = tests_client(requests, replies)
    try:
        hello = read_line(replies)
    except (EOFError, TooBig, ValueError, RecursionError):
        hello = None
    if type(hello) is not dict or hello.get("loaded") is not True or type(hello.get("names")) is not dict:
        for index in range(len(tests)):
            verdicts.write(f"{index} 0\n")
        return
    scope = {}
    for name, value in hello["names"].items():
        try:
            if type(value) is dict and list(value) == ["m"]:
                module = str(value["m"])
                if module.split(".")[0] in sys.stdlib_module_names:
                    scope[name] = importlib.import_module(module)
            else:
                scope[str(name)] = decode(value, remote)
        except (ImportError, OSError, RuntimeError, TooBig, ValueError, TypeError, IndexError,
                KeyError, RecursionError):  # a name that cannot be offered is simply absent
            continue
    for index, test in enumerate(tests):
        try:
            exec(compile(test, "<test>", "exec"), dict(scope))
            passed = True
        except (Exception, SystemExit, KeyboardInterrupt, GeneratorExit, BaseExceptionGroup):
            passed = False  # a failing test (assert, error, exit) is a verdict, not a crash; a
            # test raising its own BaseException subclass ends this sandbox: no "end" line, so
            # the parent fails every test (fail-closed, tests/test_sandbox.py)
        verdicts.write(f"{index} {int(passed)}\n")
        verdicts.flush()


def main():
    role = sys.argv[1]
    cpu_s, memory, nproc, fsize, nofile, rfd, wfd = (int(a) for a in sys.argv[2:9])
    payload = json.loads(sys.stdin.buffer.read(64 << 20))
    limits(cpu_s, memory, nproc, fsize, nofile)
    incoming = os.fdopen(rfd, "rb")
    outgoing = os.fdopen(wfd, "wb")
    if role == "answer":
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        serve_answer(payload["code"], incoming, outgoing)
    else:
        verdicts = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # what the tests print is not a verdict
        sys.stdout = sys.stderr
        run_tests(payload["tests"], outgoing, incoming, verdicts)
        verdicts.write("end\n")
        verdicts.flush()


if __name__ == "__main__":
    main()
