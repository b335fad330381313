"""The `paramstore` command line: run the server and manage stores and their snapshots.

```
paramstore serve [--address A] [--data-dir D] [--token-file F] [--tls-cert P --tls-key P]
                 [--tls-client-ca P] [--max-store-bytes N ...]   (paramstore serve --help)
                 [--cluster etcd://HOST:PORT[/PREFIX] --advertise HOST:PORT --lease-ttl S]
paramstore stores | params STORE [--select RE] | delete-store STORE | cluster
paramstore snapshot STORE [--step N] [--note TEXT] [--tag TAG ...] | snapshots STORE
paramstore restore STORE ID | export STORE ID FILE | import FILE STORE   (each: [--select RE])
paramstore delete-snapshot STORE ID
paramstore tag STORE ID TAG | untag STORE TAG | retention STORE [--keep-last N ...]
paramstore diff STORE A B | tie STORE ALIAS TARGET | untie STORE ALIAS | inspect FILE
```
An ID is a snapshot id (00000007), the same without its zero padding (7), `latest` or a tag.
Client commands read `--address` (or `PARAMSTORE_ADDRESS`; a cluster's replicas
comma-separated) and `--token` (or
`PARAMSTORE_TOKEN`); `--tls-ca`, plus `--tls-client-cert/--tls-client-key` for mutual TLS.
An error prints one line to stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from paramstore import __version__, checkpoint, logs
from paramstore.client.client import Client, connect
from paramstore.client.errors import InvalidArgument, ParamstoreError, Unauthenticated
from paramstore.client.models import RetentionPolicy, SnapshotInfo

DEFAULT_ADDRESS = "127.0.0.1:50051"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `paramstore` command; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # the server parses its own flags
        from paramstore.server import main as serve_main

        return serve_main(argv[1:])
    if argv[:1] == ["train-demo"]:  # starts its own server and workers on loopback
        from paramstore.client.train_demo import main as demo_main

        return demo_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    if args.command == "serve":
        parser.error("`serve` takes the server's own flags: paramstore serve --address ...")
    try:
        if args.command in ("inspect", "import"):  # before anything opens it: a FIFO blocks
            _safetensors_file(args.file)
        if args.command == "inspect":
            return _inspect(args.file)
        with _connect(args) as client:
            return args.run(client, args)
    except ParamstoreError as error:
        return _fail(f"{error.code}: {error}{_hint(error, args)}")
    except (OSError, checkpoint.CheckpointError) as error:  # local files: unreadable, malformed
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug of ours: still one line, never a traceback
        return _fail(f"unexpected {type(error).__name__}: {error}")


def _hint(error: ParamstoreError, args: argparse.Namespace) -> str:
    """What a CLI user can do about `error`, where its message speaks to SDK users."""
    if isinstance(error, Unauthenticated):
        return " (the CLI sends the token given by --token TOKEN or PARAMSTORE_TOKEN)"
    if "TLS server" in str(error) and not args.tls_ca:
        return " (if the server uses TLS, pass --tls-ca PEM)"
    return ""


def _fail(message: str) -> int:
    one_line = " ".join(printable(message).split())
    print(f"paramstore: error: {one_line}", file=sys.stderr)
    return 1


def _echo(text: object) -> None:
    """Print text that came from a server or a file: control characters (a terminal's escape
    sequences) are shown escaped, never sent to the terminal."""
    print("\n".join(printable(line) for line in str(text).split("\n")))


def printable(text: str) -> str:
    """`text` with each control character (C0, DEL, C1) written as `\\xNN`."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def _safetensors_file(path: Path) -> None:
    """Raise `CheckpointError` with a one-line reason unless `path` looks like a safetensors
    file: a regular file whose first 8 bytes give the length of a JSON header it holds."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise checkpoint.CheckpointError(f"{path}: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) \
            else "a device or socket"
        raise checkpoint.CheckpointError(f"{path} is {kind}, not a safetensors file")
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        start = file.read(9)
    if len(start) < 9:
        raise checkpoint.CheckpointError(
            f"{path} has {size} bytes: too short for a safetensors file")
    header = int.from_bytes(start[:8], "little")
    if header > size - 8 or start[8:9] != b"{":
        raise checkpoint.CheckpointError(
            f"{path} is not a safetensors file: its first 8 bytes announce a {header}-byte "
            f"header, and the file has {size} bytes" if header > size - 8 else
            f"{path} is not a safetensors file: its header is not JSON")


def _connect(args: argparse.Namespace) -> Client:
    cert, key = getattr(args, "tls_client_cert", None), getattr(args, "tls_client_key", None)
    if (cert is None) != (key is None):
        raise InvalidArgument("--tls-client-cert and --tls-client-key go together")
    client_cert = (Path(cert).read_bytes(), Path(key).read_bytes()) if cert and key else None
    return connect(args.address, token=args.token or None, tls=args.tls_ca or False,
                   client_cert=client_cert)


# ---- commands ------------------------------------------------------------------------------------


def _stores(client: Client, args: argparse.Namespace) -> int:
    names = client.list_stores()
    for name in names:
        _echo(name)
    if not names:
        print("no stores yet: create one with the SDK or `paramstore import FILE STORE`",
              file=sys.stderr)
    return 0


def _cluster(client: Client, args: argparse.Namespace) -> int:
    for replica, stores in client.cluster().items():
        _echo(f"{replica}  {len(stores)} store{'' if len(stores) == 1 else 's'}"
              + (f": {', '.join(stores)}" if stores else ""))
    return 0


def _delete_store(client: Client, args: argparse.Namespace) -> int:
    client.delete_store(args.store)
    _echo(f"deleted store {args.store!r} and its snapshots")
    return 0


def _params(client: Client, args: argparse.Namespace) -> int:
    _echo(client.store(args.store).collect_params(args.select))
    return 0


def _snapshot(client: Client, args: argparse.Namespace) -> int:
    metadata = {"note": args.note} if args.note is not None else None
    info = client.store(args.store).snapshot(step=args.step, metadata=metadata,
                                             tags=args.tag or ())
    _echo(info.id)
    return 0


def _snapshots(client: Client, args: argparse.Namespace) -> int:
    infos = client.store(args.store).snapshots()
    _echo(f"{'ID':<10}{'STEP':>8}  {'CREATED (UTC)':<20}{'SIZE':>12}  {'TAGS':<16}METADATA")
    for info in infos:
        _echo(_snapshot_row(info))
    if not infos:
        print(f"store {args.store!r} has no snapshots yet", file=sys.stderr)
    return 0


def _snapshot_row(info: SnapshotInfo) -> str:
    step = "-" if info.step is None else str(info.step)
    created = info.created.strftime("%Y-%m-%d %H:%M:%S")
    tags = ",".join(info.tags) or "-"
    metadata = " ".join(f"{key}={value}" for key, value in sorted(info.metadata.items()))
    return (f"{info.id:<10}{step:>8}  {created:<20}{_size(info.size_bytes):>12}  "
            f"{tags:<16}{metadata}").rstrip()


def _delete_snapshot(client: Client, args: argparse.Namespace) -> int:
    client.store(args.store).delete_snapshot(args.id)
    _echo(f"deleted snapshot {args.id} of {args.store!r}")
    return 0


def _tag(client: Client, args: argparse.Namespace) -> int:
    info = client.store(args.store).tag(args.id, args.tag)
    _echo(f"tagged snapshot {info.id} of {args.store!r} as {args.tag!r}")
    return 0


def _untag(client: Client, args: argparse.Namespace) -> int:
    client.store(args.store).untag(args.tag)
    _echo(f"removed tag {args.tag!r} of {args.store!r}")
    return 0


def _retention(client: Client, args: argparse.Namespace) -> int:
    store = client.store(args.store)
    rules = {"keep_last": args.keep_last, "keep_best": args.keep_best, "metric": args.metric,
             "mode": args.mode, "keep_every_steps": args.keep_every_steps}
    given = {key: value for key, value in rules.items() if value is not None}
    if args.default:
        if given:
            raise InvalidArgument("--default replaces the store's policy: give no rule with it")
        policy = store.set_retention()
    elif given:
        policy = store.set_retention(**given)
    else:
        policy = store.retention()
    _echo(_policy_text(policy))
    return 0


def _policy_text(policy: RetentionPolicy) -> str:
    rules = []
    if policy.keep_last:
        rules.append(f"the last {policy.keep_last}")
    if policy.keep_best:
        best = "lowest" if policy.mode == "min" else "highest"
        rules.append(f"the best {policy.keep_best} by {policy.metric} ({best})")
    if policy.keep_every_steps:
        rules.append(f"one every {policy.keep_every_steps} steps")
    kept = " + ".join(rules) + ", the newest and tagged ones" if rules else "every snapshot"
    source = " (the server's default)" if policy.server_default else ""
    return f"keeps {kept}{source}"


def _diff(client: Client, args: argparse.Namespace) -> int:
    print(client.store(args.store).diff(args.a, args.b))
    return 0


def _tie(client: Client, args: argparse.Namespace) -> int:
    client.store(args.store).tie(args.alias, args.target)
    _echo(f"{args.alias} now shares the tensor of {args.target}")
    return 0


def _untie(client: Client, args: argparse.Namespace) -> int:
    client.store(args.store).untie(args.alias)
    _echo(f"{args.alias} has its own tensor again")
    return 0


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{size:.1f} {unit}"


def _restore(client: Client, args: argparse.Namespace) -> int:
    client.store(args.store).restore(args.id, select=args.select)
    selected = f" (parameters matching {args.select!r})" if args.select else ""
    _echo(f"restored store {args.store!r} from snapshot {args.id}{selected}")
    return 0


def _export(client: Client, args: argparse.Namespace) -> int:
    info = client.store(args.store).export_snapshot(args.id, args.file, select=args.select)
    if args.materialize_ties:
        _materialize_ties(args.file)
    _echo(f"exported snapshot {info.id} of {args.store!r} to {args.file} "
          f"({_size(info.size_bytes)})")
    return 0


def _materialize_ties(path: Path) -> None:
    """Rewrite `path` with every tied name as a tensor of its own, and without the listing
    that would tie them again: a file for tools that read no paramstore metadata."""
    from paramstore.server.storage.codec import PARAMETERS_KEY

    loaded = checkpoint.load(path)
    tensors = {name: array.copy() if name in loaded.aliases else array
               for name, array in loaded.tensors.items()}
    metadata = {key: value for key, value in loaded.metadata.items() if key != PARAMETERS_KEY}
    checkpoint.save(path, tensors, metadata=metadata)


def _import(client: Client, args: argparse.Namespace) -> int:
    info = client.import_snapshot(args.file, store=args.store, select=args.select)
    _echo(f"imported {args.file} as store {info.store!r} (snapshot {info.id})")
    return 0


def _inspect(path: Path) -> int:
    """Print a safetensors file (paramstore's or any other) as the store it would import as:
    its `collect_params` listing, its ties and its metadata. Works offline."""
    from paramstore.server.storage import inspect_file

    state, metadata = inspect_file(path)
    header = f"{state.prefix} (" if state.prefix else "("
    lines = [
        f"  {info.kind} {info.name} (shape={info.shape}, dtype={info.dtype_label})"
        for info in map(state.info, state.parameters)
    ]
    _echo("\n".join([header, *lines, ")"]))
    ties = state.ties()
    if ties:
        print("ties:")
        for alias, target in ties.items():
            _echo(f"  {alias} -> {target}")
    # The listing above already shows what the parameters entry holds.
    if metadata:
        print("metadata:")
        for key, value in sorted(metadata.items()):
            _echo(f"  {key}: {value}")
    return 0


# ---- the parser ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paramstore",
        description="Serve parameter stores and manage their safetensors snapshots.",
    )
    parser.add_argument("--version", action="version", version=f"paramstore {__version__}")
    logs.add_log_level_flag(parser, "WARNING", "DEBUG shows each call to the server, its "
                                               "status and duration")
    _add_connection_options(parser, overriding=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Given after the command, the connection options override those given before it.
    connection = argparse.ArgumentParser(add_help=False)
    _add_connection_options(connection, overriding=True)

    def command(name: str, run: Callable[..., int] | None, summary: str
                ) -> argparse.ArgumentParser:
        """A subcommand; `run` None for those that need no connection (serve, inspect)."""
        sub = commands.add_parser(name, help=summary, description=summary,
                                  parents=[] if run is None else [connection])
        sub.set_defaults(run=run)
        return sub

    store: dict[str, Any] = {"metavar": "STORE", "help": "a store's name (`paramstore stores` "
                                                         "lists them)"}
    file: dict[str, Any] = {"metavar": "FILE", "help": "a safetensors file"}
    snapshot_id: dict[str, Any] = {
        "metavar": "ID", "help": "a snapshot id (00000007 or 7), 'latest' or a tag"}
    command("serve", None, "run the server (see `paramstore serve --help`)")
    command("train-demo", None, "train a tied-layer MLP with N workers on loopback and plot "
                                "the loss curves (see `paramstore train-demo --help`)")
    command("stores", _stores, "list the stores")
    command("cluster", _cluster, "list the replicas and the stores each owns")
    command("delete-store", _delete_store, "delete a store and all its snapshots"
            ).add_argument("store", **store)
    params = command("params", _params, "print a store's parameters like collect_params()")
    params.add_argument("store", **store)
    params.add_argument("--select", metavar="RE",
                        help="only names matching this regular expression at their start")
    snapshot = command("snapshot", _snapshot, "snapshot a store to the server's disk; "
                                              "prints the snapshot id")
    snapshot.add_argument("store", **store)
    snapshot.add_argument("--step", type=int, metavar="N", help="the training step to record")
    snapshot.add_argument("--note", metavar="TEXT", help="a note kept in the metadata")
    snapshot.add_argument("--tag", action="append", metavar="TAG",
                          help="tag the snapshot (repeatable); the tag moves to it")
    command("snapshots", _snapshots, "list a store's snapshots, oldest first, with their tags"
            ).add_argument("store", **store)
    restore = command("restore", _restore, "bring a store back to a snapshot")
    restore.add_argument("store", **store)
    restore.add_argument("id", **snapshot_id)
    restore.add_argument("--select", metavar="RE", help="restore only the parameters matching "
                         "this regular expression at their start; the others stay as they are")
    export = command("export", _export, "download a snapshot as a safetensors file")
    export.add_argument("store", **store)
    export.add_argument("id", **snapshot_id)
    export.add_argument("file", type=Path, metavar="FILE",
                        help="the safetensors file to write (replaced if it exists)")
    export.add_argument("--select", metavar="RE",
                        help="only the parameters matching this regular expression")
    export.add_argument("--materialize-ties", action="store_true",
                        help="write every tied name as a tensor of its own, for tools that "
                             "do not read paramstore's metadata")
    imported = command("import", _import, "create a store from a safetensors file")
    imported.add_argument("file", type=Path, **file)
    imported.add_argument("store", metavar="STORE", help="the name of the store to create")
    imported.add_argument("--select", metavar="RE",
                          help="only the parameters matching this regular expression")
    delete_snapshot = command("delete-snapshot", _delete_snapshot,
                              "delete one snapshot (and the tags it has)")
    delete_snapshot.add_argument("store", **store)
    delete_snapshot.add_argument("id", **snapshot_id)
    tag = command("tag", _tag, "tag a snapshot, moving the tag from the one that had it; "
                               "retention never deletes a tagged snapshot")
    tag.add_argument("store", **store)
    tag.add_argument("id", **snapshot_id)
    tag.add_argument("tag", metavar="TAG", help="a name such as best or release-1 (not all "
                                                "digits, not 'latest')")
    untag = command("untag", _untag, "remove a tag (the snapshot stays)")
    untag.add_argument("store", **store)
    untag.add_argument("tag", metavar="TAG", help="the tag to remove")
    retention = command(
        "retention", _retention,
        "show or set which snapshots a store keeps: a snapshot is kept when any rule keeps "
        "it; the newest and tagged ones always are. The policy applies from the next snapshot.")
    retention.add_argument("store", **store)
    retention.add_argument("--keep-last", type=int, metavar="N", help="keep the newest N")
    retention.add_argument("--keep-best", type=int, metavar="K",
                           help="keep the best K by --metric")
    retention.add_argument("--metric", metavar="KEY",
                           help="the metadata key holding the number to rank by")
    retention.add_argument("--mode", choices=("min", "max"),
                           help="min: lower is better (default); max: higher is better")
    retention.add_argument("--keep-every-steps", type=int, metavar="M",
                           help="keep every snapshot whose step is a multiple of M")
    retention.add_argument("--default", action="store_true",
                           help="drop the store's policy: the server's --keep applies again")
    diff = command("diff", _diff, "compare two snapshots parameter by parameter: status, L2 "
                                  "norm of the difference, relative change, ties")
    diff.add_argument("store", **store)
    diff.add_argument("a", metavar="A", help="the first snapshot: an id, 'latest' or a tag")
    diff.add_argument("b", metavar="B", help="the second snapshot: an id, 'latest' or a tag")
    tie = command("tie", _tie, "make ALIAS another name of TARGET's tensor")
    tie.add_argument("store", **store)
    tie.add_argument("alias", metavar="ALIAS",
                     help="the parameter name that becomes an alias (it may be new)")
    tie.add_argument("target", metavar="TARGET", help="the parameter whose tensor ALIAS shares")
    untie = command("untie", _untie, "give ALIAS its own copy of the tensor again")
    untie.add_argument("store", **store)
    untie.add_argument("alias", metavar="ALIAS",
                       help="the parameter name that stops being an alias")
    inspect = command("inspect", None, "print a safetensors file's parameters, ties and "
                                       "metadata (offline)")
    inspect.add_argument("file", type=Path, **file)
    return parser


def _add_connection_options(parser: argparse.ArgumentParser, *, overriding: bool) -> None:
    """`--address`, `--token`, `--tls-ca`; `overriding`: no defaults, so that a value is set
    only when the option is given (after the command, over the one given before it)."""

    def default(value: str | None) -> str | None:
        return argparse.SUPPRESS if overriding else value

    parser.add_argument(
        "--address", default=default(os.environ.get("PARAMSTORE_ADDRESS", DEFAULT_ADDRESS)),
        help=f"the server's host:port (env PARAMSTORE_ADDRESS, default {DEFAULT_ADDRESS})",
    )
    parser.add_argument("--token", default=default(os.environ.get("PARAMSTORE_TOKEN")),
                        help="the server's bearer token (env PARAMSTORE_TOKEN)")
    parser.add_argument("--tls-ca", metavar="PEM", default=default(None),
                        help="connect with TLS, trusting this CA certificate")
    parser.add_argument("--tls-client-cert", metavar="PEM", default=default(None),
                        help="certificate shown to a mutual-TLS server (with --tls-client-key)")
    parser.add_argument("--tls-client-key", metavar="PEM", default=default(None),
                        help="private key of --tls-client-cert")


if __name__ == "__main__":
    sys.exit(main())
