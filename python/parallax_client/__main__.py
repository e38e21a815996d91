"""python3 -m parallax_client --server HOST:PORT [--token-file F] health|list|export FILE"""
import argparse
import sys

from .client import Client


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m parallax_client")
    ap.add_argument("--server", default="127.0.0.1:50051")
    ap.add_argument("--token-file")
    ap.add_argument("action", choices=["health", "list", "export"])
    ap.add_argument("file", nargs="?")
    a = ap.parse_args(argv)
    with Client(a.server, token_file=a.token_file) as c:
        if a.action == "health":
            ok = c.health()
            print("SERVING" if ok else "NOT_SERVING")
            return 0 if ok else 1
        if a.action == "list":
            for e in c.list_configs():
                print(e.device_fingerprint, e.problem_key, e.bucket, e.variant_key, f"{e.median_us:.2f} us")
            return 0
        if not a.file:
            ap.error("export needs a FILE")
        print(c.export_results(a.file), "bytes")
        return 0


if __name__ == "__main__":
    sys.exit(main())
