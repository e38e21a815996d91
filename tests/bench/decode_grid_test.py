#!/usr/bin/env python3
"""CPU test of bench/decode_grid.py (no GPU): joining the fixture logs, and a whole run against
stand-ins for plx_decode_bench and sdpa_decode.py, one of whose measurements crashes."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GRID = os.path.join(ROOT, "bench", "decode_grid.py")
FIXTURE = os.path.join(HERE, "decode_grid_fixture")


def load(path):
    with open(path) as f:
        return json.load(f)


def grid(*args, env=None):
    return subprocess.run([sys.executable, GRID, *args], capture_output=True, text=True, env=env, timeout=120)


class FromLogs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = os.path.join(cls.tmp.name, "g.json")
        cls.p = grid("--from-logs", FIXTURE, "--out", cls.out)
        cls.res = load(cls.out)
        cls.rows = {(r["config"], r["paged"], r["B"], r["L"]): r for r in cls.res["rows"]}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_runs_and_prints_table_last(self):
        self.assertEqual(self.p.returncode, 0, self.p.stderr)
        lines = self.p.stdout.splitlines()
        self.assertIn("ours/SDPA", lines[1])
        self.assertTrue(lines[-1].startswith("gqa32 paged16:"), lines[-1])

    def test_meta(self):
        m = self.res["meta"]
        self.assertEqual(m["device"], "NVIDIA H200")
        self.assertEqual(m["copy_gbps"], 4012.5)  # the best of the processes' measurements
        self.assertEqual(m["replay_floor_us"], 2.58)

    def test_only_layouts_with_data(self):
        self.assertEqual({(c, p) for c, p, _, _ in self.rows}, {("mha", 0), ("gqa32", 0), ("gqa32", 16)})
        self.assertEqual(len(self.rows), 8 + 16 + 16)

    def test_contiguous_row(self):
        r = self.rows[("gqa32", 0, 1, 1024)]
        self.assertEqual(r["ours_default_us"], 8.90)
        self.assertEqual(r["ours_sm90_best_schedule"], "wgmma-n128-w4-s3-split8-gG-cluster")
        self.assertEqual(r["ours_best_us"], 8.36)
        self.assertIsNone(r["sm90_us"]["wgmma-n64-w4-s6-split8-gG-cluster"])  # us < 0: not valid here
        self.assertEqual(r["sdpa_best_us"], 11.0)
        self.assertAlmostEqual(r["ratio_vs_sdpa"], 8.36 / 11.0, places=3)
        self.assertEqual(r["kv_bytes"], 2 * 1 * 1024 * 8 * 128 * 2)

    def test_default_wins_and_crash_noted(self):
        r = self.rows[("gqa32", 0, 1, 65536)]
        self.assertEqual(r["ours_best_us"], 76.50)
        self.assertEqual(r["sdpa_best_us"], 80.0)  # cuDNN refused the shape
        self.assertIn("cudnn", r["sdpa_errors"])
        self.assertAlmostEqual(r["pct_copy_bw"], 100 * 268435456 / 76.5e-6 / 1e9 / 4012.5, places=1)
        self.assertEqual(r["crashed"], ["wgmma-n64-w4-s6-split8-gG-cluster"])

    def test_paged_row(self):
        r = self.rows[("gqa32", 16, 1, 65536)]
        self.assertIsNone(r["ours_sm90_best_us"])
        self.assertAlmostEqual(r["ratio_vs_contiguous"], 77.8 / 76.5, places=3)
        self.assertAlmostEqual(r["ratio_vs_sdpa"], 77.8 / 80.0, places=3)  # against contiguous SDPA

    def test_missing_shape_is_null(self):
        r = self.rows[("gqa32", 0, 128, 65536)]
        self.assertIsNone(r["ours_best_us"])
        self.assertIsNone(r["ratio_vs_sdpa"])

    def test_summary(self):
        s = self.res["summary"]["gqa32"]
        self.assertAlmostEqual(s["contiguous"]["geomean_ratio_vs_sdpa"], ((8.36 / 11.0) * (76.5 / 80.0)) ** 0.5, places=2)
        self.assertEqual(s["contiguous"]["max_ratio_vs_sdpa_at"], "B=1 L=65536")
        self.assertEqual(s["paged16"]["min_pct_copy_bw_at"], "B=1 L=65536")  # the one shape with KV >= 256 MiB
        self.assertAlmostEqual(s["paged16"]["max_ratio_vs_contiguous"], 9.2 / 8.36, places=3)


class Run(unittest.TestCase):
    """The whole call with stand-ins; one decode_sm90 measurement exits its process."""

    def test_crash_loses_one_measurement(self):
        crash = (8, 4096, "wgmma-n64-w4-s6-split8-gG-cluster")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "g.json")
            env = dict(os.environ, FAKE_BENCH_CRASH=f"{crash[0]}x{crash[1]}:{crash[2]}")
            p = grid("--only", "gqa16", "--bench", os.path.join(HERE, "fake_decode_bench.py"),
                     "--sdpa", os.path.join(HERE, "fake_sdpa_decode.py"), "--out", out, env=env)
            self.assertEqual(p.returncode, 1, p.stderr)  # a subprocess failed
            self.assertIn("blamed for the failure", p.stderr)
            res = load(out)
            self.assertEqual(len(res["rows"]), 3 * 16)
            for r in res["rows"]:
                self.assertIsNotNone(r["ours_default_us"])
                self.assertIsNotNone(r["sdpa_best_us"])
                for s, us in r.get("sm90_us", {}).items():
                    expect_none = (r["B"], r["L"], s) == crash or (r["B"] == 128 and "split4" in s)  # the fake's invalid one
                    self.assertEqual(us is None, expect_none, (r["B"], r["L"], s))
            self.assertEqual(res["rows"][1 * 4 + 1]["crashed"], [crash[2]])  # B=8 L=4096
            paged = [r for r in res["rows"] if r["paged"]]
            self.assertTrue(paged and all(r["ours_sm90_best_us"] for r in paged))  # decode_sm90 timed paged too
            logs = os.path.join(tmp, "decode-grid-logs")
            self.assertTrue(os.path.exists(os.path.join(logs, "ours-gqa16-contig.err")))
            # The logs alone give the same result.
            again = grid("--from-logs", logs, "--out", os.path.join(tmp, "again.json"))
            self.assertEqual(again.returncode, 0, again.stderr)
            res2 = load(os.path.join(tmp, "again.json"))
            self.assertEqual(res2["rows"], res["rows"])
            self.assertEqual(res2["summary"], res["summary"])

    def test_help(self):
        p = grid("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("--from-logs", p.stdout)


if __name__ == "__main__":
    unittest.main()
