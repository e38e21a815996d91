#!/usr/bin/python3
"""Python client <-> `parallax serve` round trip (ctest, label cpu).

Starts the C++ server on an ephemeral loopback port with a token, drives every kind of RPC
through python/parallax_client, checks errors cross the language boundary intact, then
stops the server with SIGTERM and expects a clean exit. Everything is time-bounded and the
server is killed whatever happens.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

SQLITE_HEADER = b"SQLite format 3\x00"
DEVICE = {"name": "NVIDIA H100 80GB HBM3", "cc_major": 9, "cc_minor": 0, "sm_count": 132,
          "memory_bytes": 81559 << 20, "driver_version": 13000, "nvrtc_version": "13.0"}
PROBLEM = {"mode": "MODE_DECODE", "dtype": "DTYPE_BF16", "head_dim": 128, "num_q_heads": 32, "num_kv_heads": 8,
           "kv_layout": "KV_LAYOUT_CONTIGUOUS", "probe": "PROBE_LEARNED", "affine": "AFFINE_PLAIN",
           "batch": 3, "seqlen": 5000}


def wait_for_port(path, server, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited early with {server.returncode}")
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        time.sleep(0.05)
    raise RuntimeError("server did not report its port")


def expect_error(fn, code, needle):
    import grpc
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
        assert needle in e.details(), f"expected '{needle}' in '{e.details()}'"
        return
    raise AssertionError(f"expected {code}")


def exercise(pc, address, token_file, tmp):
    import grpc
    with pc.Client(address, token_file=token_file, lookup_timeout=5) as c:
        assert c.health()
        r = c.get_best_config(DEVICE, PROBLEM)
        assert r.match == pc.pb2.MATCH_DEFAULT, r
        assert r.variant_key.startswith("decode-bf16-d128-h32x8-contig-nowin.learned-plain."), r.variant_key
        assert r.requested_bucket == "b4-l8192", r.requested_bucket

        expect_error(lambda: c.get_best_config(DEVICE, dict(PROBLEM, head_dim=96)),
                     grpc.StatusCode.INVALID_ARGUMENT, "problem.head_dim=96")
        expect_error(lambda: c.submit([PROBLEM], 60), grpc.StatusCode.FAILED_PRECONDITION, "no GPU on this server")
        expect_error(lambda: list(c.watch(12345, timeout=10)), grpc.StatusCode.NOT_FOUND, "no such job")
        assert c.list_configs() == []
        assert c.list_jobs() == []

        exported = os.path.join(tmp, "export.db")
        size = c.export_results(exported)
        with open(exported, "rb") as f:
            assert f.read(16) == SQLITE_HEADER
        assert size == os.path.getsize(exported) > 0
        merged = c.import_results(exported)
        assert merged.bytes_received == size, merged
        garbage = os.path.join(tmp, "garbage.db")
        with open(garbage, "wb") as f:
            f.write(b"not a database at all")
        expect_error(lambda: c.import_results(garbage), grpc.StatusCode.INVALID_ARGUMENT, "data: not an SQLite")

        # Server reflection (what grpcurl uses) is off on a server with a token: gRPC's
        # reflection service cannot check it. ServerReflectionRequest{list_services: ""} is
        # encoded by hand (field 7), as python3-grpcio ships no reflection client.
        reflect = c._channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        expect_error(lambda: list(reflect(iter([b"\x3a\x00"]), timeout=10)), grpc.StatusCode.UNIMPLEMENTED, "")

    with pc.Client(address, lookup_timeout=5) as anonymous:
        expect_error(lambda: anonymous.get_best_config(DEVICE, PROBLEM), grpc.StatusCode.UNAUTHENTICATED, "authorization")
        assert anonymous.health()  # health stays open


def exercise_cli(parallax, address, token_file):
    """`parallax remote` is a C++ client of the same server."""
    import json
    base = [parallax, "remote", "--server", address, "--token-file", token_file]
    def run(*argv):
        return subprocess.run(base + list(argv), capture_output=True, text=True, timeout=30)
    r = run("health")
    assert r.returncode == 0 and r.stdout.strip() == "SERVING", r
    r = run("get", "--mode", "decode", "--batch", "3", "--seqlen", "5000", "--device-name", DEVICE["name"],
            "--cc", "9.0", "--sms", "132", "--mem-mib", "81559", "--driver", "13000", "--nvrtc", "13.0", "--json")
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply["match"] == "MATCH_DEFAULT" and reply["requested_bucket"] == "b4-l8192", reply
    r = run("get", "--mode", "decode", "--head-dim", "96", "--device-name", "x", "--cc", "9.0", "--sms", "1",
            "--mem-mib", "1", "--driver", "1")
    assert r.returncode == 2 and "problem.head_dim=96" in r.stderr, r
    r = run("tune", "--mode", "decode")
    assert r.returncode == 1 and "FAILED_PRECONDITION" in r.stderr, r
    r = run("list", "--jobs", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"jobs": []}, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallax", required=True)
    ap.add_argument("--stubs-dir", required=True)
    ap.add_argument("--python-dir", required=True)
    args = ap.parse_args()

    sys.path.insert(0, args.python_dir)
    os.environ["PARALLAX_STUBS_DIR"] = args.stubs_dir  # the stubs CMake generated
    import parallax_client as pc
    assert os.path.samefile(pc.stubs_origin(), args.stubs_dir)

    with tempfile.TemporaryDirectory(prefix="plx-py-") as tmp:
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write("py-token-0123456789abcdef\n")
        os.chmod(token_file, 0o600)
        port_file = os.path.join(tmp, "port")
        log = open(os.path.join(tmp, "serve.log"), "w+")
        server = subprocess.Popen([args.parallax, "serve", "--listen", "127.0.0.1:0", "--db",
                                   os.path.join(tmp, "db", "tuner.db"), "--port-file", port_file,
                                   "--auth-token-file", token_file, "--shutdown-grace", "2"],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            address = f"127.0.0.1:{wait_for_port(port_file, server)}"
            exercise(pc, address, token_file, tmp)
            exercise_cli(args.parallax, address, token_file)
            # Stubs generated on first import (no build tree) talk to the same server.
            env = dict(os.environ, PARALLAX_PROTO=os.path.join(args.python_dir, "..", "proto", "parallax", "v1",
                                                               "tuner.proto"))
            env.pop("PARALLAX_STUBS_DIR")
            env["TMPDIR"] = tmp
            code = ("import sys; sys.path.insert(0, %r); import parallax_client as pc; "
                    "c = pc.Client(%r, token_file=%r, lookup_timeout=5); "
                    "assert pc.stubs_origin().startswith(%r), pc.stubs_origin(); "
                    "print(c.get_best_config(%r, %r).variant_key)") % (args.python_dir, address, token_file, tmp,
                                                                      DEVICE, PROBLEM)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            assert out.stdout.startswith("decode-bf16-d128"), out.stdout

            server.send_signal(signal.SIGTERM)
            rc = server.wait(timeout=20)
            assert rc == 0, f"serve exited with {rc}"
        except BaseException:
            log.seek(0)
            sys.stderr.write("---- serve log ----\n" + log.read())
            raise
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    print("python client round trip: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
