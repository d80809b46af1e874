#!/bin/bash
# A throw-away single-node Ceph cluster with radosgw, the S3 target of the tests and of bench/upload.py.
#
#   scripts/ceph-rgw.sh install        install the Debian packages if missing (idempotent)
#   scripts/ceph-rgw.sh start DIR      bring up monitor + one memstore OSD (pool size 1) + radosgw in DIR,
#                                      create a test user, write DIR/env (shell exports) and DIR/pids
#   scripts/ceph-rgw.sh stop DIR       stop every daemon listed in DIR/pids and wait until it has exited
#   scripts/ceph-rgw.sh rgw-stop DIR   stop radosgw only (the cluster stays up): "gateway down" tests
#   scripts/ceph-rgw.sh rgw-start DIR  start radosgw again in a cluster whose gateway was stopped
#
# Environment: RGW_PORT (7480), CEPH_MON_PORT (6789), CEPH_MEMSTORE_BYTES (memory cap of the OSD, 4 GiB),
# RGW_START_TIMEOUT (seconds to wait for a daemon, 90), RGW_ACCESS_KEY / RGW_SECRET_KEY (random if unset).
#
# Debian bookworm ships Ceph Pacific, which has no standalone (dbstore) gateway backend: radosgw needs a
# monitor and an OSD behind it. memstore keeps every object in RAM, so the cluster is fast, needs no disk
# and forgets everything when stopped. Daemons run as the calling user, logs go to DIR/log.
set -euo pipefail

readonly PROG=${0##*/}
readonly PACKAGES=(ceph-mon ceph-osd radosgw curl)
readonly TOOLS=(ceph ceph-mon ceph-osd ceph-authtool monmaptool radosgw radosgw-admin curl)
RGW_PORT=${RGW_PORT:-7480}
CEPH_MON_PORT=${CEPH_MON_PORT:-6789}
CEPH_MEMSTORE_BYTES=${CEPH_MEMSTORE_BYTES:-4294967296}
RGW_START_TIMEOUT=${RGW_START_TIMEOUT:-90}
DAEMON_NAMES=(mon osd rgw) # order of start; stop goes backwards

die() {
	echo "$PROG: error: $*" >&2
	exit 1
}

note() {
	echo "$PROG: $*" >&2
}

usage() {
	sed -n '2,10s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

is_number() {
	[[ $1 =~ ^[0-9]+$ ]]
}

# --- install ---------------------------------------------------------------------------------------------

missing_packages() {
	local pkg
	for pkg in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q 'ok installed' || echo "$pkg"
	done
}

cmd_install() {
	command -v dpkg-query >/dev/null || die "dpkg-query not found: this script expects Debian (bookworm ships Ceph Pacific)"
	local missing
	missing=$(missing_packages | tr '\n' ' ')
	missing=${missing% }
	if [[ -z $missing ]]; then
		note "packages already installed: ${PACKAGES[*]}"
		return 0
	fi
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null || die "installing $missing needs root, and sudo is not available"
		sudo=(sudo)
	fi
	note "installing Debian packages: $missing"
	# Package lists can be stale or absent in a fresh container: refresh, then install without recommends
	# (recommends pull in ceph-mgr's Python stack, which a test cluster does not use).
	"${sudo[@]}" apt-get update -qq || die "apt-get update failed (no package mirror reachable?)"
	# shellcheck disable=SC2086  # $missing is a space-separated list of package names
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
		die "apt-get install $missing failed"
	missing=$(missing_packages | tr '\n' ' ')
	[[ -z ${missing// /} ]] || die "still missing after apt-get install: $missing"
	note "installed: ${PACKAGES[*]}"
}

# --- helpers for start/stop -----------------------------------------------------------------------------

check_tools() {
	local tool missing=()
	for tool in "${TOOLS[@]}"; do
		command -v "$tool" >/dev/null || missing+=("$tool")
	done
	((${#missing[@]} == 0)) || die "not installed: ${missing[*]} (run: $0 install)"
}

port_in_use() {
	# bash's /dev/tcp connects, so success means something already listens there.
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The process name a pids entry must have, so a recycled PID is never signalled.
comm_of() {
	case $1 in
	mon) echo ceph-mon ;;
	osd) echo ceph-osd ;;
	rgw) echo radosgw ;;
	*) return 1 ;;
	esac
}

pid_alive() {
	local name=$1 pid=$2 comm
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[[ $comm == "$(comm_of "$name")" ]]
}

# PID of daemon NAME from DIR/pids, or nothing.
pid_of() {
	local dir=$1 name=$2
	[[ -f $dir/pids ]] || return 0
	awk -v n="$name" '$1 == n { print $2 }' "$dir/pids" | tail -n 1
}

record_pid() {
	local dir=$1 name=$2 pid=$3 tmp
	tmp=$(mktemp "$dir/.pids.XXXXXX")
	if [[ -f $dir/pids ]]; then
		awk -v n="$name" '$1 != n' "$dir/pids" >"$tmp"
	fi
	echo "$name $pid" >>"$tmp"
	mv -f "$tmp" "$dir/pids"
}

# Ceph daemons fork into the background and then write their pid file; wait for it.
wait_pidfile() {
	local dir=$1 name=$2 file=$3 i pid
	for ((i = 0; i < RGW_START_TIMEOUT * 10; i++)); do
		if [[ -s $file ]]; then
			pid=$(<"$file")
			if is_number "$pid" && pid_alive "$name" "$pid"; then
				record_pid "$dir" "$name" "$pid"
				return 0
			fi
		fi
		sleep 0.1
	done
	return 1
}

log_tail() {
	local file=$1
	[[ -f $file ]] || return 0
	echo "--- last lines of $file:" >&2
	tail -n 15 "$file" >&2
}

# Send SIGTERM, wait up to 30 s, then SIGKILL: memstore holds nothing worth a clean shutdown.
stop_one() {
	local dir=$1 name=$2 pid i
	pid=$(pid_of "$dir" "$name")
	[[ -n $pid ]] || return 0
	if pid_alive "$name" "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do
			pid_alive "$name" "$pid" || break
			sleep 0.1
		done
		if pid_alive "$name" "$pid"; then
			note "$name ($pid) ignored SIGTERM for 30 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 100; i++)); do
				pid_alive "$name" "$pid" || break
				sleep 0.1
			done
			! pid_alive "$name" "$pid" || die "$name ($pid) survived SIGKILL"
		fi
		note "stopped $name ($pid)"
	fi
	local tmp
	tmp=$(mktemp "$dir/.pids.XXXXXX")
	awk -v n="$name" '$1 != n' "$dir/pids" >"$tmp"
	mv -f "$tmp" "$dir/pids"
}

load_dir() {
	[[ -n ${1:-} ]] || usage
	DIR=$(realpath -m -- "$1")
	CONF=$DIR/ceph.conf
}

# --- start -------------------------------------------------------------------------------------------------

STARTED=0

# If start fails half-way, do not leave daemons behind that would hold the ports for the next attempt.
cleanup_failed_start() {
	local rc=$?
	if ((STARTED == 0)) && [[ -f ${DIR:-}/pids ]]; then
		note "start failed; stopping the daemons it had started (logs in $DIR/log)"
		local name
		for name in rgw osd mon; do
			stop_one "$DIR" "$name" || true
		done
	fi
	exit "$rc"
}

write_conf() {
	local fsid=$1
	cat >"$CONF" <<CONF
# Written by $PROG: a one-node test cluster. Pool size 1 and no manager: nothing here is redundant.
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$CEPH_MON_PORT
mon initial members = a
public addr = 127.0.0.1
keyring = $DIR/\$cluster.\$name.keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
[mon]
mon data = $DIR/mon/\$id
[osd]
osd data = $DIR/osd/\$id
osd objectstore = memstore
memstore device bytes = $CEPH_MEMSTORE_BYTES
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $DIR/rgw
CONF
}

# Run a setup command, keeping its output in DIR/log/setup.log and showing it only when it fails.
run() {
	local what=$1
	shift
	echo "+ $*" >>"$DIR/log/setup.log"
	if ! timeout "$RGW_START_TIMEOUT" "$@" >>"$DIR/log/setup.log" 2>&1; then
		echo "--- last lines of $DIR/log/setup.log:" >&2
		tail -n 15 "$DIR/log/setup.log" >&2
		die "$what failed"
	fi
}

start_rgw() {
	local port
	port=$(sed -n 's/^rgw frontends = beast endpoint=127\.0\.0\.1:\([0-9]*\)$/\1/p' "$CONF")
	[[ -n $port ]] || die "$CONF names no radosgw port"
	! port_in_use "$port" || die "port $port is already in use on 127.0.0.1 (another radosgw? set RGW_PORT)"
	rm -f "$DIR/run/client.rgw.a.pid"
	run "starting radosgw" radosgw -c "$CONF" -n client.rgw.a --keyring "$DIR/ceph.client.rgw.a.keyring"
	wait_pidfile "$DIR" rgw "$DIR/run/client.rgw.a.pid" || {
		log_tail "$DIR/log/client.rgw.a.log"
		die "radosgw did not start"
	}
	# The gateway answers anonymous GET / with a bucket list once it has connected to the cluster.
	local i pid
	pid=$(pid_of "$DIR" rgw)
	for ((i = 0; i < RGW_START_TIMEOUT * 4; i++)); do
		curl -sf -m 1 -o /dev/null "http://127.0.0.1:$port/" && return 0
		pid_alive rgw "$pid" || {
			log_tail "$DIR/log/client.rgw.a.log"
			die "radosgw ($pid) exited before it answered on port $port"
		}
		sleep 0.25
	done
	log_tail "$DIR/log/client.rgw.a.log"
	die "radosgw did not answer on http://127.0.0.1:$port/ within $RGW_START_TIMEOUT s"
}

random_key() {
	# $1 characters from $2; head closes the pipe early, so ignore tr's SIGPIPE under pipefail.
	(tr -dc "$2" </dev/urandom || true) | head -c "$1"
}

cmd_start() {
	load_dir "${1:-}"
	check_tools
	local n
	for n in RGW_PORT CEPH_MON_PORT CEPH_MEMSTORE_BYTES RGW_START_TIMEOUT; do
		is_number "${!n}" || die "$n must be a number, not '${!n}'"
	done
	if [[ -e $DIR ]]; then
		[[ -d $DIR ]] || die "$DIR exists and is not a directory"
		local name pid
		for name in "${DAEMON_NAMES[@]}"; do
			pid=$(pid_of "$DIR" "$name")
			if [[ -n $pid ]] && pid_alive "$name" "$pid"; then
				die "a cluster is already running in $DIR ($name pid $pid); run: $0 stop $DIR"
			fi
		done
		# Only ever wipe a directory this script created, never an arbitrary one given by mistake.
		if [[ -n $(ls -A "$DIR") && ! -f $CONF ]]; then
			die "$DIR is not empty and holds no cluster of ours; give an empty or new directory"
		fi
		rm -rf "${DIR:?}"/{ceph.conf,mon,osd,run,log,rgw,pids,env,monmap}
		rm -f "$DIR"/*.keyring "$DIR"/.pids.* "$DIR"/.env.*
	fi
	! port_in_use "$CEPH_MON_PORT" || die "port $CEPH_MON_PORT is already in use (another monitor? set CEPH_MON_PORT)"
	! port_in_use "$RGW_PORT" || die "port $RGW_PORT is already in use (another radosgw? set RGW_PORT)"
	mkdir -p "$DIR"/{mon/a,osd/0,run,log,rgw}
	: >"$DIR/pids"
	trap cleanup_failed_start EXIT

	local t0=$SECONDS fsid osd_uuid osd_id
	fsid=$(</proc/sys/kernel/random/uuid) # uuidgen lives in uuid-runtime, which is not always installed
	write_conf "$fsid"
	local c=(-c "$CONF")

	run "creating the monitor keyring" ceph-authtool --create-keyring "$DIR/ceph.mon.keyring" --gen-key -n mon. \
		--cap mon 'allow *'
	run "creating the admin keyring" ceph-authtool --create-keyring "$DIR/ceph.client.admin.keyring" --gen-key \
		-n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *'
	run "importing the admin key" ceph-authtool "$DIR/ceph.mon.keyring" --import-keyring "$DIR/ceph.client.admin.keyring"
	run "creating the monmap" monmaptool --create --add a "v1:127.0.0.1:$CEPH_MON_PORT" --fsid "$fsid" "$DIR/monmap"
	run "creating the monitor store" ceph-mon "${c[@]}" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/ceph.mon.keyring"
	run "starting the monitor" ceph-mon "${c[@]}" -i a
	wait_pidfile "$DIR" mon "$DIR/run/mon.a.pid" || {
		log_tail "$DIR/log/mon.a.log"
		die "the monitor did not start"
	}

	osd_uuid=$(</proc/sys/kernel/random/uuid)
	osd_id=$(timeout "$RGW_START_TIMEOUT" ceph "${c[@]}" --connect-timeout 30 osd new "$osd_uuid" 2>>"$DIR/log/setup.log") ||
		{
			log_tail "$DIR/log/setup.log"
			die "the monitor did not answer 'osd new'"
		}
	[[ $osd_id == 0 ]] || die "expected OSD id 0 in a new cluster, got '$osd_id'"
	run "creating the OSD store" ceph-osd "${c[@]}" -i 0 --mkfs --mkkey --osd-uuid "$osd_uuid" --no-mon-config \
		--keyring "$DIR/osd/0/keyring"
	run "registering the OSD key" ceph "${c[@]}" auth add osd.0 osd 'allow *' mon 'allow profile osd' \
		mgr 'allow profile osd' -i "$DIR/osd/0/keyring"
	# A host bucket under the default root, so the default CRUSH rule can place PGs on the single OSD.
	run "adding a CRUSH host" ceph "${c[@]}" osd crush add-bucket localhost host
	run "moving the CRUSH host" ceph "${c[@]}" osd crush move localhost root=default
	run "adding the OSD to CRUSH" ceph "${c[@]}" osd crush add osd.0 1.0 host=localhost
	run "starting the OSD" ceph-osd "${c[@]}" -i 0 --keyring "$DIR/osd/0/keyring"
	wait_pidfile "$DIR" osd "$DIR/run/osd.0.pid" || {
		log_tail "$DIR/log/osd.0.log"
		die "the OSD did not start"
	}

	run "creating the gateway key" ceph "${c[@]}" auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' \
		-o "$DIR/ceph.client.rgw.a.keyring"
	start_rgw

	local access=${RGW_ACCESS_KEY:-} secret=${RGW_SECRET_KEY:-}
	[[ -n $access ]] || access=$(random_key 20 'A-Z0-9')
	[[ -n $secret ]] || secret=$(random_key 40 'A-Za-z0-9')
	run "creating the test user" radosgw-admin "${c[@]}" user create --uid=station --display-name="records terminal test" \
		--access-key="$access" --secret="$secret"

	local tmp
	tmp=$(mktemp "$DIR/.env.XXXXXX")
	{
		echo "# Written by $PROG start; source it to reach the gateway."
		printf 'export RGW_ENDPOINT=%q\n' "http://127.0.0.1:$RGW_PORT"
		printf 'export RGW_ACCESS_KEY=%q\n' "$access"
		printf 'export RGW_SECRET_KEY=%q\n' "$secret"
		printf 'export CEPH_CONF=%q\n' "$CONF"
	} >"$tmp"
	chmod 600 "$tmp"
	mv -f "$tmp" "$DIR/env"
	STARTED=1
	trap - EXIT

	echo "radosgw: http://127.0.0.1:$RGW_PORT"
	echo "access key: $access"
	echo "secret key: $secret"
	echo "env: $DIR/env"
	echo "pids: $(tr '\n' ' ' <"$DIR/pids")"
	echo "started in $((SECONDS - t0)) s"
}

# --- stop ----------------------------------------------------------------------------------------------------

cmd_stop() {
	load_dir "${1:-}"
	[[ -f $DIR/pids ]] || die "$DIR/pids not found: no cluster was started in $DIR"
	local i
	for ((i = ${#DAEMON_NAMES[@]} - 1; i >= 0; i--)); do
		stop_one "$DIR" "${DAEMON_NAMES[i]}"
	done
}

cmd_rgw_stop() {
	load_dir "${1:-}"
	[[ -f $DIR/pids ]] || die "$DIR/pids not found: no cluster was started in $DIR"
	stop_one "$DIR" rgw
}

cmd_rgw_start() {
	load_dir "${1:-}"
	[[ -f $CONF && -f $DIR/pids ]] || die "no cluster in $DIR (run: $0 start $DIR)"
	check_tools
	local name pid
	for name in mon osd; do
		pid=$(pid_of "$DIR" "$name")
		if [[ -z $pid ]] || ! pid_alive "$name" "$pid"; then
			die "the $name daemon of $DIR is not running; start the whole cluster again"
		fi
	done
	pid=$(pid_of "$DIR" rgw)
	if [[ -n $pid ]] && pid_alive rgw "$pid"; then
		die "radosgw is already running in $DIR (pid $pid)"
	fi
	start_rgw
	echo "radosgw restarted: pid $(pid_of "$DIR" rgw)"
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
rgw-stop) cmd_rgw_stop "${2:-}" ;;
rgw-start) cmd_rgw_start "${2:-}" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
