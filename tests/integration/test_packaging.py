"""Packaging without docker: the Dockerfile's runtime packages against `ldd edge`, its build packages
against ./dev, its HEALTHCHECK probe against a real edge, deploy/container.toml under --check, the
systemd unit under systemd-analyze, logrotate's pid file, and the `cmake --install` layout."""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

REPO = os.path.dirname(os.path.dirname(et.HERE))
DOCKERFILE = os.path.join(REPO, "Dockerfile")
DEPLOY = os.path.join(REPO, "deploy")
CONTAINER_TOML = os.path.join(DEPLOY, "container.toml")
UNIT = os.path.join(DEPLOY, "edge.service")
LOGROTATE = os.path.join(DEPLOY, "logrotate.edge")
# Sanitizer runtimes (the ASan build runs these tests too): never part of the image.
SANITIZER_PKG_RE = re.compile(r"^lib(asan|ubsan|lsan|tsan|hwasan)\d*$")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def clean_env(extra=None):
    """The environment without the variables the configs read, plus `extra`."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "EDGETEST_"))}
    e["EDGE_BIN"] = et.EDGE_BIN
    e.update(extra or {})
    return e


def run(cmd, env=None, timeout=60, cwd=None):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=timeout, cwd=cwd)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Dockerfile parsing


def dockerfile_stages():
    """[[logical instruction line, ...] per stage]: continuations joined, comment lines dropped."""
    stages, cur, buf = [], None, ""
    for raw in read(DOCKERFILE).splitlines():
        s = raw.strip()
        if s.startswith("#") or (not s and not buf):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        line, buf = (buf + s).strip(), ""
        if re.match(r"(?i)^FROM\s", line):
            cur = []
            stages.append(cur)
        if cur is not None:
            cur.append(line)
    return stages


def apt_packages(stage):
    """Package names given to `apt-get install` in a stage's RUN lines."""
    pkgs = []
    for line in stage:
        if not re.match(r"(?i)^RUN\s", line):
            continue
        for m in re.finditer(r"apt-get\s+install\s+([^&;|]*)", line):
            pkgs += [t for t in m.group(1).split() if not t.startswith("-")]
    return pkgs


def healthcheck_cmd():
    """The HEALTHCHECK's exec-form CMD array."""
    for stage in dockerfile_stages():
        for line in stage:
            if re.match(r"(?i)^HEALTHCHECK\s", line):
                m = re.search(r"\bCMD\s+(\[.*\])\s*$", line)
                if not m:
                    raise AssertionError(f"HEALTHCHECK is not in exec form: {line}")
                return json.loads(m.group(1))
    raise AssertionError("no HEALTHCHECK in the Dockerfile")


# ---------------------------------------------------------------------------------------------
# ldd / dpkg


def ldd_libraries(binary):
    """[(soname, path)] of `ldd binary` (the vDSO left out)."""
    rc, out = run(["ldd", binary])
    if rc != 0:
        raise AssertionError(f"ldd {binary} failed:\n{out}")
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("linux-vdso") or line.startswith("linux-gate"):
            continue
        if "not found" in line:
            raise AssertionError(f"ldd: a library is missing on this machine: {line}")
        m = re.match(r"^(\S+)\s+=>\s+(\S+)\s+\(", line) or re.match(r"^((/\S+))\s+\(", line)
        if m:
            libs.append((os.path.basename(m.group(1)), m.group(2)))
    return libs


def usrmerge_twin(path):
    return path[4:] if path.startswith("/usr/") else "/usr" + path


def dpkg_owner(path):
    """The Debian package holding `path` (tries the real path and the /usr-merged twin), or None."""
    cands = []
    for p in (path, os.path.realpath(path)):
        for c in (p, usrmerge_twin(p)):
            if c not in cands:
                cands.append(c)
    for c in cands:
        rc, out = run(["dpkg", "-S", c])
        if rc != 0:
            continue
        for line in out.splitlines():
            if line.startswith("diversion ") or ": " not in line:
                continue
            owners = line.split(": ", 1)[0]
            return owners.split(",")[0].strip().split(":")[0]
    return None


# ---------------------------------------------------------------------------------------------


class DockerfilePackages(unittest.TestCase):
    def test_runtime_packages_cover_ldd(self):
        if not shutil.which("ldd"):
            self.skipTest("ldd is not installed")
        if not shutil.which("dpkg"):
            self.skipTest("dpkg is absent (not Debian): cannot map libraries to packages")
        if not os.path.exists(et.EDGE_BIN):
            raise et.EdgeError(f"edge binary not found at {et.EDGE_BIN}")
        stages = dockerfile_stages()
        self.assertGreaterEqual(len(stages), 2, "the Dockerfile should be multi-stage")
        runtime = set(apt_packages(stages[-1]))
        self.assertTrue(runtime, "no apt-get install in the final stage")
        needed, unowned = {}, []
        for soname, path in ldd_libraries(et.EDGE_BIN):
            pkg = dpkg_owner(path)
            if pkg is None:
                unowned.append(f"{soname} ({path})")
            elif not SANITIZER_PKG_RE.match(pkg):
                needed.setdefault(pkg, []).append(soname)
        self.assertEqual(unowned, [], "libraries no Debian package holds (built locally?)")
        missing = {p: libs for p, libs in needed.items() if p not in runtime}
        self.assertEqual(missing, {}, f"the final stage's apt-get install lacks these packages (for these "
                                      f"libraries); it installs {sorted(runtime)}")

    def test_build_packages_include_dev(self):
        m = re.search(r'^BUILD_PKGS="([^"]*)"', read(os.path.join(REPO, "dev")), re.M)
        self.assertIsNotNone(m, "BUILD_PKGS not found in ./dev")
        dev_pkgs = set(m.group(1).split())
        build = set(apt_packages(dockerfile_stages()[0]))
        self.assertEqual(dev_pkgs - build, set(), "./dev's BUILD_PKGS missing from the build stage")

    def test_image_layout(self):
        text = "\n".join(sum(dockerfile_stages(), []))
        self.assertRegex(text, r"(?m)^FROM debian:12 AS \w+")
        self.assertRegex(dockerfile_stages()[-1][0], r"^FROM debian:12-slim\b")
        self.assertRegex(text, r"(?m)^COPY deploy/container\.toml /etc/edge/edge\.toml$")
        self.assertRegex(text, r"(?m)^EXPOSE 8080 8443$")
        self.assertRegex(text, r"(?m)^STOPSIGNAL SIGTERM$")
        self.assertRegex(text, r'(?m)^ENTRYPOINT \["/opt/edge/bin/edge"\]$')
        self.assertRegex(text, r'(?m)^CMD \["--config", "/etc/edge/edge\.toml"\]$')
        user = [ln for ln in dockerfile_stages()[-1] if ln.startswith("USER ")]
        self.assertEqual(user, ["USER 10001:10001"])
        ignore = read(os.path.join(REPO, ".dockerignore")).split()
        for p in (".git", "build*", "**/node_modules", "bench/var", "tests/e2e/out"):
            self.assertIn(p, ignore)


class HealthcheckProbe(unittest.TestCase):
    """The Dockerfile's HEALTHCHECK command, run as is (port from EDGE_HEALTH_PORT)."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("bash"):
            raise unittest.SkipTest("bash is not installed")
        cls.cmd = healthcheck_cmd()
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-packaging-")
        try:
            site = et.Site(cls.tmp)
            cls.config_path = os.path.join(cls.tmp, "edge.toml")
            with open(cls.config_path, "w") as f:
                f.write(et.make_config(site, "off", listen=["127.0.0.1:0"]))
            cls.edge = et.Edge(cls.config_path, expect_hosts={"127.0.0.1"}).start()
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.edge.settle()
            rc = cls.edge.stop()
            if rc != 0:
                raise AssertionError(f"edge did not exit 0 on SIGTERM (rc={rc}):\n{cls.edge.stderr_text()}")
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def probe(self, port):
        p = subprocess.run(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(os.environ, EDGE_HEALTH_PORT=str(port)), timeout=10)
        return p.returncode

    def test_command_shape(self):
        self.assertEqual(self.cmd[:2], ["bash", "-c"], self.cmd)
        self.assertEqual(len(self.cmd), 3, self.cmd)
        self.assertIn("/dev/tcp/127.0.0.1/", self.cmd[2])
        self.assertIn("GET /health HTTP/1.0", self.cmd[2])
        self.assertNotIn("curl", self.cmd[2])

    def test_default_port_is_the_containers_plain_listener(self):
        m = re.search(r"\$\{EDGE_HEALTH_PORT:-(\d+)\}", self.cmd[2])
        self.assertIsNotNone(m, self.cmd[2])
        self.assertRegex(read(CONTAINER_TOML), rf'(?m)^address = "0\.0\.0\.0:{m.group(1)}"\s*$')

    def test_healthy_edge_passes(self):
        self.assertEqual(self.probe(self.edge.port), 0, self.edge.stderr_text())

    def test_closed_port_fails(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        try:
            self.assertNotEqual(self.probe(s.getsockname()[1]), 0)
        finally:
            s.close()

    def test_non_200_fails(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def answer():
            try:
                c, _ = srv.accept()
                with c:
                    c.settimeout(3)
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        try:
            self.assertNotEqual(self.probe(srv.getsockname()[1]), 0)
        finally:
            t.join(5)
            srv.close()


class ContainerConfig(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(et.EDGE_BIN):
            raise et.EdgeError(f"edge binary not found at {et.EDGE_BIN}")
        self.tmp = tempfile.mkdtemp(prefix="edgetest-packaging-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def check(self, path, extra=None):
        env = clean_env({
            "EDGE_API": "127.0.0.1:5000",
            "EDGE_ADMIN_TOKEN": "secret",
            "EDGE_ADMIN_LISTEN": "127.0.0.1:0",
            "EDGE_PUBLIC": os.path.join(REPO, "public"),  # the image's /srv/edge/public
            "EDGE_TLS_CERT": os.path.join(self.tmp, "certs", "tls.crt"),
            "EDGE_TLS_KEY": os.path.join(self.tmp, "certs", "tls.key"),
        })
        env.update(extra or {})
        return run([et.EDGE_BIN, "--check", "--config", path], env=env)

    def test_uses_the_variables(self):
        text = read(CONTAINER_TOML)
        for var in ("EDGE_API", "EDGE_RATE_LIMIT_STORE", "EDGE_ADMIN_TOKEN"):
            self.assertIn("${" + var + ":-", text, var)
        self.assertRegex(text, r'(?m)^access = "stdout"')
        self.assertRegex(text, r'(?m)^error = "stderr"')

    def test_check(self):
        pre_issue8 = False
        for extra in ({}, {"EDGE_RATE_LIMIT_STORE": "redis://127.0.0.1:6379"}):
            path = CONTAINER_TOML
            rc, out = self.check(path, extra)
            if rc != 0 and re.search(r'unknown key "(admin|pid_file)"', out):
                # This edge predates issue 8: check the rest, without [admin] and pid_file.
                pre_issue8 = True
                text = re.sub(r"(?ms)^\[admin\].*?(?=^\[)", "", read(CONTAINER_TOML))
                text = re.sub(r"(?m)^pid_file = .*\n", "", text)
                path = os.path.join(self.tmp, "container-pre-issue8.toml")
                with open(path, "w") as f:
                    f.write(text)
                rc, out = self.check(path, extra)
            self.assertEqual(rc, 0, f"{path} {extra}: {out}")
            self.assertIn("0.0.0.0:8080", out)
            self.assertIn("0.0.0.0:8443", out)
            if extra:
                self.assertIn("redis://127.0.0.1:6379", out)
        if pre_issue8:
            self.skipTest("this edge does not know [admin] / pid_file yet (issue 8): "
                          "deploy/container.toml was checked without them")


class SystemdUnit(unittest.TestCase):
    def unit_copy(self):
        """The unit with ExecStart's /opt/edge/bin/edge pointing at EDGE_BIN (verify wants it to exist)."""
        tmp = tempfile.mkdtemp(prefix="edgetest-packaging-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "edge.service")
        with open(path, "w") as f:
            f.write(read(UNIT).replace("/opt/edge/bin/edge", os.path.abspath(et.EDGE_BIN)))
        return path

    def test_verify(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        rc, out = run(["systemd-analyze", "verify", self.unit_copy()])
        self.assertEqual(rc, 0, out)
        self.assertNotIn("edge.service:", out)

    def test_security_exposure(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        rc, out = run(["systemd-analyze", "security", "--offline=true", self.unit_copy()])
        if rc != 0 and ("offline" in out and ("unrecognized" in out or "Unknown" in out)):
            self.skipTest("this systemd-analyze has no --offline (systemd < 250)")
        m = re.search(r"Overall exposure level for edge\.service: (\d+(?:\.\d+)?)", out)
        self.assertIsNotNone(m, out)
        self.assertLessEqual(float(m.group(1)), 2.0, out)

    def test_reload_stop_and_pid_file(self):
        unit = read(UNIT)
        self.assertRegex(unit, r"(?m)^ExecStart=/opt/edge/bin/edge --config /etc/edge/edge\.toml$")
        self.assertRegex(unit, r"(?m)^ExecReload=/bin/kill -HUP \$MAINPID$")
        self.assertRegex(unit, r"(?m)^RuntimeDirectory=edge$")
        self.assertRegex(unit, r"(?m)^LogsDirectory=edge$")
        stop = re.search(r"(?m)^TimeoutStopSec=(\d+)s$", unit)
        grace = re.search(r'(?m)^grace_period = "(\d+)s"',
                          read(os.path.join(REPO, "conf", "production.example.toml")))
        self.assertIsNotNone(stop)
        self.assertIsNotNone(grace)
        self.assertGreater(int(stop.group(1)), int(grace.group(1)), "TimeoutStopSec must exceed grace_period")
        rot = read(LOGROTATE)
        self.assertIn("/var/log/edge/", rot)
        self.assertIn('kill -USR1 "$(cat /run/edge/edge.pid)"', rot)
        for word in ("daily", "rotate 14", "compress", "delaycompress", "missingok", "notifempty"):
            self.assertRegex(rot, rf"(?m)^\s+{word}$")


class InstallLayout(unittest.TestCase):
    def test_cmake_install(self):
        build = os.environ.get("EDGE_BUILD_DIR") or os.path.dirname(os.path.abspath(et.EDGE_BIN))
        script = os.path.join(build, "cmake_install.cmake")
        if not shutil.which("cmake"):
            self.skipTest("cmake is not installed")
        if not os.path.exists(script):
            self.skipTest(f"{build} is not a CMake build directory (set EDGE_BUILD_DIR)")
        # Skip before running anything (cmake --install writes install_manifest.txt in the build dir).
        if "share/edge" not in read(script):
            self.skipTest(f"{build} was configured before the install rules: re-run cmake there")
        prefix = tempfile.mkdtemp(prefix="edgetest-install-")
        self.addCleanup(shutil.rmtree, prefix, True)
        rc, out = run(["cmake", "--install", build, "--prefix", prefix], timeout=120)
        self.assertEqual(rc, 0, out)
        if "share/edge" not in out:
            self.skipTest(f"cmake --install {build} installed nothing under share/edge: re-run cmake there")
        binary = os.path.join(prefix, "bin", "edge")
        self.assertTrue(os.stat(binary).st_mode & stat.S_IXUSR, binary)
        share = os.path.join(prefix, "share", "edge")
        for rel in ("conf/edge.toml", "conf/production.example.toml", "conf/REFERENCE.md", "public/index.html",
                    "deploy/edge.service", "deploy/logrotate.edge", "deploy/container.toml", "deploy/README.md"):
            self.assertTrue(os.path.isfile(os.path.join(share, rel)), rel)
        rc, out = run([binary, "--check", "--config", os.path.join(share, "conf", "edge.toml")], env=clean_env())
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, re.escape(share) + r"/(conf/\.\./)?public", "the static root is not the installed public/")


if __name__ == "__main__":
    unittest.main()
