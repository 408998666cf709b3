"""Config and CLI: --check, errors with file:line, ${VAR} expansion, relative paths, --version/--help."""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


def json_str(s):
    import json
    return json.dumps(s)


def run_edge(args, env=None, timeout=10):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("EDGETEST_"):
            del e[k]
    e.update(env or {})
    p = subprocess.run([et.EDGE_BIN] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


GOOD_TEMPLATE = """\
[server]
workers = 1
header_timeout = "5s"
server_header = "{server_header}"

[log]
access = "off"

[[listen]]
address = "{address}"

[[route]]
path = "/health"
health = true

[[route]]
prefix = "/"
root = "{root}"
spa_fallback = "/index.html"
immutable = ["/assets/"]
headers = {{ "X-From-Env" = "{xenv}" }}
"""


class ConfigCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(et.EDGE_BIN):
            raise et.EdgeError(f"edge binary not found at {et.EDGE_BIN}")
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-config-")
        cls.site = et.Site(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write(self, name, text):
        p = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        return p

    def good(self, **kw):
        v = dict(server_header="samia-edge", address="127.0.0.1:0", root=self.site.root, xenv="x")
        v.update(kw)
        return GOOD_TEMPLATE.format(**v)

    def line_of(self, text, needle):
        for i, ln in enumerate(text.splitlines(), 1):
            if needle in ln:
                return i
        raise AssertionError(needle)

    def assert_bad(self, name, text, needle, check=True, env=None):
        """The config is refused: exit 1 and `<file>:<line of needle>:` in the message."""
        p = self.write(name, text)
        args = (["--check"] if check else []) + ["--config", p]
        rc, out, err = run_edge(args, env=env)
        line = self.line_of(text, needle)
        both = out + err
        self.assertEqual(rc, 1, f"{name}: exit {rc}; output:\n{both}")
        self.assertIn(f"{p}:{line}: ", both, f"{name}: expected '{p}:{line}: ...' in:\n{both}")
        return both

    # -- good ------------------------------------------------------------------------------
    def test_check_good_config(self):
        text = self.good()
        p = self.write("good.toml", text)
        rc, out, err = run_edge(["--check", "--config", p])
        both = out + err
        self.assertEqual(rc, 0, both)
        self.assertIn("127.0.0.1:0", both, "listener not printed")
        self.assertIn("/health", both, "routes not printed")
        self.assertIn(self.site.root, both, "route root not printed")

    def test_check_does_not_listen(self):
        # --check with a port that is in use still succeeds: it only validates
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        try:
            port = s.getsockname()[1]
            p = self.write("inuse-check.toml", self.good(address=f"127.0.0.1:{port}"))
            rc, out, err = run_edge(["--check", "--config", p])
            self.assertEqual(rc, 0, out + err)
        finally:
            s.close()

    def test_check_default_repo_config(self):
        conf = os.path.join(et.HERE, "..", "..", "conf", "edge.toml")
        if not os.path.exists(conf) or not os.path.exists(os.path.join(et.HERE, "..", "..", "public", "index.html")):
            self.skipTest("no conf/edge.toml or public/index.html in this checkout")
        rc, out, err = run_edge(["--check", "--config", conf])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("127.0.0.1:8080", out + err)

    def test_check_production_example(self):
        conf = os.path.join(et.HERE, "..", "..", "conf", "production.example.toml")
        public = os.path.join(et.HERE, "..", "..", "public")
        if not os.path.exists(conf) or not os.path.isdir(public):
            self.skipTest("no conf/production.example.toml or public/ in this checkout")
        tmp = tempfile.mkdtemp(prefix="edgetest-prod-")
        self.addCleanup(shutil.rmtree, tmp, True)
        crt, key = os.path.join(tmp, "t.crt"), os.path.join(tmp, "t.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=samia.example"],
                       check=True, capture_output=True)
        os.makedirs(os.path.join(tmp, "log"))
        # The access log's folder must exist: point it at the temp dir by copying the example.
        with open(conf) as f:
            text = f.read().replace("/var/log/edge/access.log", os.path.join(tmp, "log", "access.log"))
        text = text.replace('"${EDGE_PUBLIC:-../public}"', json_str(os.path.abspath(public)))
        p = os.path.join(tmp, "production.toml")
        with open(p, "w") as f:
            f.write(text)
        rc, out, err = run_edge(["--check", "--config", p],
                                env={"EDGE_TLS_CERT": crt, "EDGE_TLS_KEY": key})
        self.assertEqual(rc, 0, out + err)
        self.assertIn("upstream api (least_conn", out + err)
        self.assertIn("upstream storage", out + err)

    def test_env_expansion_in_check(self):
        text = self.good(address="${EDGETEST_ADDR}", root="${EDGETEST_ROOT}",
                         server_header="${EDGETEST_UNSET_HDR:-edge-default-hdr}")
        p = self.write("env.toml", text)
        rc, out, err = run_edge(["--check", "--config", p],
                                env={"EDGETEST_ADDR": "127.0.0.1:0", "EDGETEST_ROOT": self.site.root})
        both = out + err
        self.assertEqual(rc, 0, both)
        self.assertIn("127.0.0.1:0", both)
        self.assertIn(self.site.root, both)
        self.assertNotIn("${EDGETEST_ADDR}", both)

    def test_env_expansion_at_runtime(self):
        text = self.good(address="${EDGETEST_ADDR}", root="${EDGETEST_ROOT}",
                         server_header="${EDGETEST_UNSET_HDR:-edge-default-hdr}",
                         xenv="${EDGETEST_SET:-unused-default}")
        p = self.write("envrun.toml", text)
        env = {"EDGETEST_ADDR": "127.0.0.1:0", "EDGETEST_ROOT": self.site.root, "EDGETEST_SET": "from-env"}
        edge = et.Edge(p, env=env, expect_hosts={"127.0.0.1"})
        edge.env.pop("EDGETEST_UNSET_HDR", None)
        edge.start()
        try:
            r = et.raw_one(edge.port, et.request("/logo.svg"))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("server"), "edge-default-hdr")
            self.assertEqual(r.header("x-from-env"), "from-env")
        finally:
            edge.settle()
            self.assertEqual(edge.stop(), 0)

    def test_relative_paths_from_config_folder(self):
        conf_dir = os.path.join(self.tmp, "conf")
        text = self.good(root="../site") + '\n'
        text = text.replace('access = "off"', 'access = "../logs-rel/access.log"')
        os.makedirs(os.path.join(self.tmp, "logs-rel"), exist_ok=True)
        p = self.write("conf/rel.toml", text)
        edge = et.Edge(p, expect_hosts={"127.0.0.1"})
        # run from an unrelated cwd: paths must be relative to the config file, not the cwd
        edge.start()
        try:
            r = et.raw_one(edge.port, et.request("/index.html", headers=[("X-Request-Id", "rel-1")]))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, et.INDEX_HTML)
        finally:
            edge.settle()
            self.assertEqual(edge.stop(), 0)
        with open(os.path.join(self.tmp, "logs-rel", "access.log")) as f:
            self.assertIn('"rel-1"', f.read())
        self.assertTrue(os.path.isdir(conf_dir))

    # -- bad -------------------------------------------------------------------------------
    def test_unknown_key_server(self):
        text = self.good().replace('header_timeout = "5s"', 'header_timeout = "5s"\ncolour = "blue"')
        self.assert_bad("unknown-server.toml", text, "colour")

    def test_unknown_key_route(self):
        text = self.good().replace('spa_fallback = "/index.html"', 'spa_fallbak = "/index.html"')
        self.assert_bad("unknown-route.toml", text, "spa_fallbak")

    def test_unknown_top_level_table(self):
        text = self.good() + '\n[serverr]\nworkers = 2\n'
        self.assert_bad("unknown-top.toml", text, "[serverr]")

    def test_wrong_type(self):
        text = self.good().replace('workers = 1', 'workers = true')
        self.assert_bad("wrongtype-workers.toml", text, "workers = true")
        text = self.good().replace('header_timeout = "5s"', 'header_timeout = "5s"\nmax_headers = "lots"')
        self.assert_bad("wrongtype-maxheaders.toml", text, "max_headers")
        text = self.good().replace('immutable = ["/assets/"]', 'immutable = 42')
        self.assert_bad("wrongtype-immutable.toml", text, "immutable = 42")

    def test_bad_duration(self):
        text = self.good().replace('header_timeout = "5s"', 'header_timeout = "five seconds"')
        self.assert_bad("bad-duration.toml", text, "header_timeout")

    def test_missing_root_folder(self):
        text = self.good(root=os.path.join(self.tmp, "no-such-folder"))
        out = self.assert_bad("missing-root.toml", text, "no-such-folder")
        self.assertIn("no-such-folder", out)

    def test_missing_root_folder_relative(self):
        text = self.good(root="./also-missing")
        self.assert_bad("missing-root-rel.toml", text, "also-missing")

    def test_unset_variable_without_default(self):
        text = self.good(server_header="${EDGETEST_NOT_SET_ANYWHERE}")
        out = self.assert_bad("unset-var.toml", text, "EDGETEST_NOT_SET_ANYWHERE")
        self.assertGreaterEqual(out.count("EDGETEST_NOT_SET_ANYWHERE"), 1, out)

    def test_unset_variable_in_address(self):
        text = self.good(address="${EDGETEST_NO_ADDR}")
        self.assert_bad("unset-addr.toml", text, "EDGETEST_NO_ADDR")

    def test_bad_address(self):
        text = self.good(address="127.0.0.1:99999")
        self.assert_bad("bad-port.toml", text, "99999")
        text = self.good(address="not-an-ip:80")
        self.assert_bad("bad-host.toml", text, "not-an-ip")

    def test_toml_syntax_error(self):
        text = self.good().replace('workers = 1', 'workers = = 1')
        self.assert_bad("syntax.toml", text, "workers = = 1")

    def test_bad_config_without_check_exits_1(self):
        text = self.good().replace('header_timeout = "5s"', 'header_timeout = "5s"\nbogus_key = 1')
        self.assert_bad("bad-run.toml", text, "bogus_key", check=False)

    def test_missing_config_file(self):
        p = os.path.join(self.tmp, "does-not-exist.toml")
        rc, out, err = run_edge(["--check", "--config", p])
        self.assertNotEqual(rc, 0)
        self.assertIn("does-not-exist.toml", out + err)

    def test_port_in_use_fails_fast(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        try:
            port = s.getsockname()[1]
            p = self.write("inuse.toml", self.good(address=f"127.0.0.1:{port}"))
            try:
                rc, out, err = run_edge(["--config", p], timeout=8)
            except subprocess.TimeoutExpired:
                self.fail("edge kept running although its port is taken")
            self.assertNotEqual(rc, 0)
            self.assertIn(str(port), out + err)
        finally:
            s.close()

    # -- CLI -------------------------------------------------------------------------------
    def test_version(self):
        rc, out, err = run_edge(["--version"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out + err, r"\d+\.\d+\.\d+")

    def test_help(self):
        rc, out, err = run_edge(["--help"])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("--config", out + err)
        self.assertIn("--check", out + err)

    def test_unknown_option(self):
        rc, out, err = run_edge(["--no-such-option"])
        self.assertNotEqual(rc, 0)
        self.assertTrue((out + err).strip())


if __name__ == "__main__":
    unittest.main()
