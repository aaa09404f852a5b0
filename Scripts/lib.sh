# Shared by Scripts/demo, Scripts/test and Scripts/bench. Sourced, not run.

# Packages the demo, the tests and the benchmark use (the line before last:
# what Scripts/package and its checks use: dpkg-shlibdeps, dpkg-deb, strip,
# lintian, man -l, bash-completion, systemd-analyze; the last: what
# Scripts/libssh2 builds tunnel's libssh2 with). Installed with apt-get
# so a fresh Debian 12 machine needs nothing done by hand.
TUNNEL_APT_PACKAGES="libssh2-1-dev openssh-server openssh-client postgresql postgresql-client postgresql-contrib
  libssl-dev python3 iperf3 iproute2 util-linux procps psmisc libcap2-bin ca-certificates git
  curl netcat-openbsd proxychains4 prometheus tmux python3-matplotlib
  dpkg-dev lintian man-db bash-completion systemd
  gcc make patch xz-utils zlib1g-dev"

install_packages() {
  local missing=""
  for p in $TUNNEL_APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "==> apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  # Debian starts no sshd or cluster in containers; the tests start their own.
  mkdir -p /run/sshd
}

setup_swift() {
  if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
  fi
  command -v swift >/dev/null 2>&1 || { echo "swift is not installed (expected at /opt/swift)" >&2; exit 1; }
}

# free_port: a free loopback port below the ephemeral range when there is room,
# so no outgoing connection (the tunnel's own, to sshd) can take it before it is bound.
free_port() {
  python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in (random.sample(range(10000, low), 200) if low > 12000 else []) + [0]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        print(s.getsockname()[1])
        break
    except OSError:
        pass
    finally:
        s.close()
PY
}

# write_sshd_config DIR PORT [extra config lines]: the throwaway server's
# sshd_config (host key DIR/host_ed25519, users' keys DIR/authorized_keys),
# shared by the scripts and the integration tests. sshd keeps the first value
# it reads for a keyword, so the extra lines go first and win.
write_sshd_config() {
  local dir=$1 port=$2 extra=${3:-}
  cat > "$dir/sshd_config" <<CFG
$extra
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
MaxStartups 10000:30:10000
MaxSessions 100
LogLevel VERBOSE
CFG
}

# start_sshd DIR PORT [extra config lines]: a throwaway OpenSSH server with keys in DIR.
start_sshd() {
  local dir=$1 port=$2 extra=${3:-}
  ssh-keygen -q -t ed25519 -N '' -C demo-host -f "$dir/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C demo-user -f "$dir/id_ed25519"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  write_sshd_config "$dir" "$port" "$extra"
  /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
  for _ in $(seq 100); do [ -s "$dir/sshd.pid" ] && break; sleep 0.05; done
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" > "$dir/known_hosts"
}

# start_postgres DIR PORT: a throwaway cluster, trust auth, as the postgres user.
start_postgres() {
  local dir=$1 port=$2 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  mkdir -p "$dir" && chown postgres: "$dir"
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
}

stop_postgres() {
  local dir=$1 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
}
