"""The `paramstore` command line against a real `paramstore serve` process.

Most commands run `paramstore.client.cli.main` in this process (the installed console script
calls exactly that); the tests of exit statuses, stderr and environment variables run the
installed `paramstore` script as a child process, as a shell would.
"""

import argparse
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import safetensors.numpy
from chapter_nets import mlp, rgnet, tied_net
from server_process import paramstore_command, running_server

from paramstore import __version__, checkpoint
from paramstore.client.cli import _parser, main

pytest_plugins = ("server_fixtures",)  # `served`, `remote`


@pytest.fixture
def paramstore(served, capsys, monkeypatch):
    """`paramstore(*args)` -> (exit status, stdout, stderr), against the module's server."""
    monkeypatch.setenv("PARAMSTORE_ADDRESS", served.address)
    monkeypatch.delenv("PARAMSTORE_TOKEN", raising=False)

    def run(*args):
        capsys.readouterr()
        status = main([str(arg) for arg in args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def pushed_mlp(remote):
    net = mlp()
    store = remote.create_store("mlp")
    store.push(net.collect_params())
    return store, net


# ---- listing -----------------------------------------------------------------------------------


def test_help_lists_every_command():
    shown = subprocess.run([*paramstore_command(), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    for command in ("serve", "stores", "params", "snapshot", "snapshots", "restore", "export",
                    "import", "inspect", "delete-store", "delete-snapshot", "tag", "untag",
                    "retention", "tie", "untie"):
        assert f"    {command} " in shown.stdout


def test_version_prints_the_package_version():
    shown = subprocess.run([*paramstore_command(), "--version"], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.split() == ["paramstore", __version__]


def test_export_materialize_ties_writes_each_tied_name_as_its_own_tensor(
        paramstore, pushed_mlp, tmp_path):
    store, _ = pushed_mlp
    store.push({"extra_bias": np.zeros(10, np.float32)})
    store.tie("extra_bias", "dense1_bias")
    paramstore("snapshot", "mlp")
    path = tmp_path / "plain.safetensors"
    assert paramstore("export", "mlp", "latest", path, "--materialize-ties")[0] == 0
    loaded = safetensors.numpy.load_file(path)
    np.testing.assert_array_equal(loaded["extra_bias"], loaded["dense1_bias"])
    assert checkpoint.load(path).aliases == {}


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:0", "127.0.0.1:70000", ":80",
                                     "http://127.0.0.1:50051"])
def test_an_address_without_a_valid_port_is_refused(capsys, address):
    assert main(["--address", address, "stores"]) == 1
    assert "HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:99999", "127.0.0.1:port",
                                     "http://127.0.0.1:50051"])
def test_serve_refuses_an_address_without_a_valid_port(capsys, address):
    with pytest.raises(SystemExit) as exited:  # gRPC would listen on 443, or on port % 65536
        main(["serve", "--address", address])
    assert exited.value.code == 2 and f"{address!r} is not HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--token-file", "--tls-client-ca"])
def test_serve_names_the_flag_of_a_missing_file(capsys, tmp_path, flag):
    missing = tmp_path / "missing.pem"
    extra = ["--tls-cert", __file__, "--tls-key", __file__] if flag == "--tls-client-ca" else []
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--address", "127.0.0.1:0", flag, str(missing), *extra])
    assert exited.value.code == 2
    assert f"{flag} {missing}: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("arguments", [
    ["--tls-client-cert", "cert.pem", "stores"],
    ["retention", "mlp", "--default", "--keep-last", "2"],
])
def test_a_mistake_in_the_cli_arguments_is_an_invalid_argument(paramstore, remote, arguments):
    remote.create_store("mlp")
    status, _, err = paramstore(*arguments)
    assert status == 1 and err.startswith("paramstore: error: INVALID_ARGUMENT: ")
    assert "UNKNOWN" not in err


def test_every_argument_of_every_client_command_says_what_it_is():
    commands = next(action for action in _parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, (name, action.dest)


@pytest.mark.parametrize(("command", "options"), [
    ("serve", ["--address ADDRESS", "--data-dir DIR", "--token-file FILE", "--keep N"]),
    ("train-demo", ["--workers N", "--steps S", "--mode {sync,async}", "--output PNG"]),
])
def test_serve_and_train_demo_help_is_written_for_their_users(command, options):
    shown = subprocess.run([*paramstore_command(), command, "--help"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert shown.returncode == 0
    for option in options:  # each option with its help on its line
        assert re.search(rf"^  {re.escape(option)}  +\S", shown.stdout, re.MULTILINE), option
    # The description speaks to the user, not of the code's parameters and exceptions.
    assert "`port_file`" not in shown.stdout and "Raises" not in shown.stdout


def test_diff_names_its_two_snapshots_a_and_b():
    shown = subprocess.run([*paramstore_command(), "diff", "--help"], capture_output=True,
                           text=True, timeout=60)
    assert "STORE A B" in " ".join(shown.stdout.split())


def test_serve_after_client_options_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--address", "127.0.0.1:0", "serve"])
    assert exited.value.code == 2 and "paramstore serve --address" in capsys.readouterr().err


def test_stores_prints_one_name_per_line(paramstore, remote):
    remote.create_store("b")
    remote.create_store("a")
    assert paramstore("stores") == (0, "a\nb\n", "")


@pytest.mark.parametrize("build", [mlp, rgnet, tied_net])
def test_params_prints_exactly_the_local_collect_params(paramstore, remote, build):
    net = build()
    remote.create_store("net").push(net.collect_params())
    assert paramstore("params", "net") == (0, f"{net.collect_params()}\n", "")


def test_params_select_prints_the_local_selection(paramstore, pushed_mlp):
    _, net = pushed_mlp
    status, out, _ = paramstore("params", "mlp", "--select", ".*weight")
    assert (status, out) == (0, f"{net.collect_params('.*weight')}\n")


def test_params_of_a_missing_store_prints_one_error_line(paramstore, remote):
    status, out, err = paramstore("params", "ghost")
    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and "ghost" in err and err.startswith("paramstore: error:")


def test_a_bad_select_regex_prints_an_invalid_argument_error(paramstore, pushed_mlp):
    status, _, err = paramstore("params", "mlp", "--select", "dense(")
    assert status == 1 and "INVALID_ARGUMENT" in err and "regex" in err


# ---- snapshots ---------------------------------------------------------------------------------


def test_snapshot_prints_the_id_that_snapshots_lists(paramstore, pushed_mlp):
    status, out, _ = paramstore("snapshot", "mlp", "--step", "100", "--note", "warm start")
    snapshot_id = out.strip()
    assert status == 0 and snapshot_id
    status, listing, _ = paramstore("snapshots", "mlp")
    header, row = listing.splitlines()
    assert header.split()[:2] == ["ID", "STEP"]
    assert row.split()[:2] == [snapshot_id, "100"] and row.endswith("note=warm start")


def test_snapshots_of_a_store_without_any_prints_only_the_header(paramstore, remote):
    remote.create_store("empty")
    status, out, err = paramstore("snapshots", "empty")
    assert status == 0 and len(out.splitlines()) == 1 and "no snapshots yet" in err


def test_stores_says_when_there_are_none(paramstore, remote):
    assert paramstore("stores")[:2] == (0, "")
    assert "no stores yet" in paramstore("stores")[2]


def test_snapshots_lists_the_tags_given_by_snapshot_and_tag(paramstore, pushed_mlp):
    paramstore("snapshot", "mlp", "--tag", "best", "--tag", "warm")
    paramstore("snapshot", "mlp")
    assert paramstore("tag", "mlp", "latest", "release")[:2] == (
        0, "tagged snapshot 00000002 of 'mlp' as 'release'\n")
    rows = paramstore("snapshots", "mlp")[1].splitlines()[1:]
    assert [row.split()[6] for row in rows] == ["best,warm", "release"]


def test_untag_removes_a_tag_that_restore_then_refuses(paramstore, pushed_mlp):
    paramstore("snapshot", "mlp", "--tag", "best")
    assert paramstore("restore", "mlp", "best")[0] == 0
    assert paramstore("untag", "mlp", "best")[0] == 0
    status, _, err = paramstore("restore", "mlp", "best")
    assert status == 1 and "NOT_FOUND" in err and "'best'" in err


def test_restore_select_restores_only_the_matching_parameters(paramstore, pushed_mlp):
    store, net = pushed_mlp
    paramstore("snapshot", "mlp")
    for name in ("dense0_bias", "dense1_bias"):
        store.collect_params()[name].set_data(np.ones_like(store.collect_params()[name].data()
                                                           .asnumpy()))
    status, message, _ = paramstore("restore", "mlp", "latest", "--select", "dense0_")
    assert status == 0 and "dense0_" in message
    params = store.collect_params()
    np.testing.assert_array_equal(params["dense0_bias"].data().asnumpy(),
                                  net[0].bias.data().asnumpy())
    assert (params["dense1_bias"].data().asnumpy() == 1).all()


def test_export_select_writes_only_the_matching_tensors(paramstore, pushed_mlp, tmp_path):
    paramstore("snapshot", "mlp")
    assert paramstore("export", "mlp", "1", tmp_path / "w.safetensors", "--select", ".*weight"
                      )[0] == 0
    assert sorted(safetensors.numpy.load_file(tmp_path / "w.safetensors")) == [
        "dense0_weight", "dense1_weight"]


def test_delete_snapshot_takes_an_unpadded_id(paramstore, pushed_mlp):
    paramstore("snapshot", "mlp")
    paramstore("snapshot", "mlp")
    assert paramstore("delete-snapshot", "mlp", "1")[0] == 0
    rows = paramstore("snapshots", "mlp")[1].splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["00000002"]


def test_delete_store_removes_the_store(paramstore, remote):
    remote.create_store("doomed")
    assert paramstore("delete-store", "doomed")[0] == 0
    assert remote.list_stores() == []
    status, _, err = paramstore("delete-store", "doomed")
    assert status == 1 and "NOT_FOUND" in err


def test_retention_sets_and_shows_the_policy(paramstore, remote):
    remote.create_store("run")
    assert paramstore("retention", "run")[1] == "keeps every snapshot (the server's default)\n"
    status, out, _ = paramstore("retention", "run", "--keep-last", "2", "--keep-best", "1",
                                "--metric", "val_loss", "--mode", "max")
    assert status == 0
    assert out == ("keeps the last 2 + the best 1 by val_loss (highest), the newest and tagged "
                   "ones\n")
    assert paramstore("retention", "run")[1] == out
    assert "server's default" in paramstore("retention", "run", "--default")[1]


def test_retention_refuses_keep_best_without_a_metric(paramstore, remote):
    remote.create_store("run")
    status, _, err = paramstore("retention", "run", "--keep-best", "2")
    assert status == 1 and "INVALID_ARGUMENT" in err and "metric" in err


def test_tie_and_untie_change_the_stores_ties(paramstore, pushed_mlp):
    store, _ = pushed_mlp
    assert paramstore("tie", "mlp", "dense1_bias", "dense0_bias")[0] == 1  # shapes differ
    store.push({"extra_bias": np.zeros(10, np.float32)})
    assert paramstore("tie", "mlp", "extra_bias", "dense1_bias")[0] == 0
    assert store.ties() == {"extra_bias": "dense1_bias"}
    assert paramstore("untie", "mlp", "extra_bias")[0] == 0
    assert store.ties() == {}


def test_restore_brings_the_store_back_to_the_snapshot(paramstore, pushed_mlp):
    store, net = pushed_mlp
    _, out, _ = paramstore("snapshot", "mlp")
    store.collect_params()["dense1_bias"].set_data(np.ones(10, np.float32))
    status, message, _ = paramstore("restore", "mlp", out.strip())
    assert status == 0 and out.strip() in message
    np.testing.assert_array_equal(store.collect_params()["dense1_bias"].data().asnumpy(),
                                  net[1].bias.data().asnumpy())


def test_restoring_a_missing_snapshot_fails_with_not_found(paramstore, pushed_mlp):
    status, _, err = paramstore("restore", "mlp", "00000099")
    assert status == 1 and "NOT_FOUND" in err and "00000099" in err


def test_serve_keep_retains_only_the_newest_snapshots(tmp_path):
    with running_server(tmp_path / "data", "--keep", "2") as server:
        with server.connect() as client:
            client.create_store("s")
        ids = [server.cli("snapshot", "s", "--step", str(step)).stdout.strip()
               for step in range(4)]
        rows = server.cli("snapshots", "s").stdout.splitlines()[1:]
        assert [row.split()[0] for row in rows] == ids[2:]


# ---- export, import, inspect -------------------------------------------------------------------


def test_export_writes_a_plain_safetensors_file(paramstore, pushed_mlp, tmp_path):
    _, net = pushed_mlp
    _, out, _ = paramstore("snapshot", "mlp")
    status, _, _ = paramstore("export", "mlp", out.strip(), tmp_path / "mlp.safetensors")
    assert status == 0
    tensors = safetensors.numpy.load_file(tmp_path / "mlp.safetensors")
    np.testing.assert_array_equal(tensors["dense0_weight"], net[0].weight.data().asnumpy())


def test_import_creates_a_store_that_lists_like_the_exported_one(paramstore, pushed_mlp, tmp_path):
    _, out, _ = paramstore("snapshot", "mlp")
    paramstore("export", "mlp", out.strip(), tmp_path / "mlp.safetensors")
    status, _, _ = paramstore("import", tmp_path / "mlp.safetensors", "copy")
    assert status == 0
    assert paramstore("params", "copy")[1] == paramstore("params", "mlp")[1]


def test_importing_a_malformed_file_fails_and_creates_no_store(paramstore, remote, tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x0a\x00\x00\x00\x00\x00\x00\x00{not json}")
    status, _, err = paramstore("import", tmp_path / "junk.safetensors", "junk")
    assert status == 1 and "INVALID_ARGUMENT" in err
    assert remote.list_stores() == []


def test_importing_a_missing_file_names_it(paramstore, tmp_path):
    status, _, err = paramstore("import", tmp_path / "absent.safetensors", "s")
    assert status == 1 and "absent.safetensors" in err


def test_inspect_prints_an_exported_snapshot_with_its_ties_and_metadata(
    paramstore, pushed_mlp, tmp_path
):
    store, net = pushed_mlp
    store.push({"decoder_weight": np.zeros((10, 256), np.float32)})
    store.tie("decoder_weight", "dense1_weight")
    _, out, _ = paramstore("snapshot", "mlp", "--step", "7", "--note", "tied")
    paramstore("export", "mlp", out.strip(), tmp_path / "mlp.safetensors")
    status, shown, _ = paramstore("inspect", tmp_path / "mlp.safetensors")
    listing = str(store.collect_params())
    assert status == 0 and shown.startswith(listing + "\n")
    rest = shown[len(listing) + 1:]
    assert "ties:\n  decoder_weight -> dense1_weight\n" in rest
    assert "  note: tied\n" in rest and "  paramstore.step: 7\n" in rest


def test_inspect_prints_a_plain_safetensors_file_offline(tmp_path, capsys):
    safetensors.numpy.save_file(
        {"w": np.ones((2, 3), np.float32), "b": np.zeros(2, np.int64)}, tmp_path / "plain.st",
        metadata={"framework": "numpy"},
    )
    assert main(["--address", "127.0.0.1:1", "inspect", str(tmp_path / "plain.st")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "(" and lines[3:] == [")", "metadata:", "  framework: numpy"]
    assert sorted(lines[1:3]) == ["  Parameter b (shape=(2,), dtype=int64)",
                                  "  Parameter w (shape=(2, 3), dtype=float32)"]


def test_inspect_prints_a_saved_net_by_structural_names(tmp_path, capsys):
    net = tied_net()
    net.save_parameters(str(tmp_path / "tied.safetensors"))
    assert main(["inspect", str(tmp_path / "tied.safetensors")]) == 0
    shown = capsys.readouterr().out
    assert "  Parameter 3.weight (shape=(10, 8), dtype=float32)\n" in shown
    assert "ties:\n" in shown


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_inspect_of_a_damaged_file_prints_one_error_line(tmp_path, capsys, damage):
    data = bytearray(checkpoint.dumps({"w": np.ones(100, np.float32)}))
    if damage == "truncated":
        data = data[:-40]
    else:
        data[-1] ^= 0xFF
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    assert main(["inspect", str(tmp_path / "bad.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("paramstore: error:") and err.count("\n") == 1


# ---- the installed script: environment, tokens, exit statuses ----------------------------------


def test_the_script_reads_the_address_from_the_environment(served, remote):
    remote.create_store("from-env")
    done = served.cli("stores")
    assert (done.returncode, done.stdout, done.stderr) == (0, "from-env\n", "")


def test_an_unreachable_server_prints_one_line_saying_how_to_start_one(tmp_path):
    done = subprocess.run([*paramstore_command(), "--address", "127.0.0.1:1", "stores"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot reach" in done.stderr
    assert "Traceback" not in done.stderr
    # What went wrong and what to do, without gRPC's status words or a TLS red herring.
    assert "connection refused" in done.stderr
    assert "`paramstore serve --address 127.0.0.1:1` starts one" in done.stderr
    assert "UNKNOWN" not in done.stderr and "--tls-ca" not in done.stderr


def test_export_into_a_folder_names_the_folder_and_writes_nothing(paramstore, pushed_mlp,
                                                                   tmp_path):
    paramstore("snapshot", "mlp")
    folder = tmp_path / "exports"
    folder.mkdir()
    status, _, err = paramstore("export", "mlp", "latest", folder)
    assert status == 1 and f"{folder} is a folder" in err
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


def test_a_token_server_refuses_the_cli_without_the_right_token(tmp_path):
    with running_server(tmp_path / "data", token="s3cret") as server:
        wrong = server.cli("stores", token="wrong").stderr
        assert wrong.count("UNAUTHENTICATED") == 1 and "--token TOKEN or PARAMSTORE_TOKEN" in wrong
        assert server.cli("stores").returncode == 0  # PARAMSTORE_TOKEN=s3cret
        refused = server.cli("--token", "", "stores", token="s3cret")
        assert refused.returncode == 1 and "Traceback" not in refused.stderr


def test_options_after_the_command_override_those_before_it(served, remote):
    remote.create_store("here")
    done = served.cli("--address", "127.0.0.1:1", "stores", "--address", served.address)
    assert (done.returncode, done.stdout) == (0, "here\n")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_cli_talks_tls_to_a_tls_server_given_its_certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    with running_server(tmp_path / "data", tls=(cert, key)) as server:
        with server.connect() as client:
            client.create_store("secure")
        assert server.cli("--tls-ca", str(cert), "stores").stdout == "secure\n"
        plain = server.cli("stores")  # plain text to a TLS server
        assert plain.returncode == 1 and "pass --tls-ca" in plain.stderr
