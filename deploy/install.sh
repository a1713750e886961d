#!/usr/bin/env bash
# Install the plugNmeet webhook receiver beside plugNmeet, or upgrade it: run as root from a
# checkout,
#
#   sudo deploy/install.sh
#
# It puts the app in /opt/plugNmeet/webhooks/app, a virtualenv with the pinned packages in
# /opt/plugNmeet/webhooks/venv, the settings in /opt/plugNmeet/webhooks/webhooks.env (written
# once, never overwritten), the database in /var/lib/plugnmeet-webhooks, and the systemd
# units in /etc/systemd/system; then it starts the socket and the service, or reloads a
# running service. Running it again is an upgrade. It never edits plugNmeet's config.yaml:
# it prints the lines to add there.
#
# The options let it install elsewhere, without root and without systemd (the tests do):
# see --help.
set -euo pipefail
shopt -s nullglob
umask 022

DEFAULT_PREFIX=/opt/plugNmeet/webhooks
DEFAULT_STATE_DIR=/var/lib/plugnmeet-webhooks
DEFAULT_PLUGNMEET_CONFIG=/opt/plugNmeet/config.yaml
SERVICE_USER=plugnmeet-webhooks
SERVICE=plugnmeet-webhooks.service
SOCKET=plugnmeet-webhooks.socket
DROP_IN=plugnmeet-config.conf
# What the app needs at run time, from the checkout (only the files git tracks, when it is
# a git checkout): no tests, no .venv, no .git.
APP_PATHS=(app.py config.py validation.py handlers.py gunicorn.conf.py requirements.txt
  README.md docs plugnmeet_webhooks samples)
# Files the gunicorn master has loaded (or whose packages it has imported): workers are
# forked from it, so a change to one of them takes a restart, not a reload.
MASTER_FILES=(config.py gunicorn.conf.py plugnmeet_webhooks/__init__.py
  plugnmeet_webhooks/serving.py requirements.txt)

SCHEMA_UPGRADE="Run 'flask --app app db upgrade' as docs/operations.md, \"Running in production\", shows, then: systemctl restart $SERVICE"

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<EOF
Usage: sudo deploy/install.sh [options]

Installs or upgrades the plugNmeet webhook receiver as the systemd service
plugnmeet-webhooks, socket-activated on 127.0.0.1:8000.

Options:
  --prefix DIR              where the app, its virtualenv and webhooks.env go
                            (default $DEFAULT_PREFIX)
  --unit-dir DIR            where the systemd units go (default /etc/systemd/system)
  --state-dir DIR           where the SQLite database goes (default $DEFAULT_STATE_DIR)
  --plugnmeet-config FILE   plugNmeet's config.yaml, read for the key pair when it exists
                            (default $DEFAULT_PLUGNMEET_CONFIG)
  --python PYTHON           the Python (3.11 or newer) to make the virtualenv with
                            (default: python3.11, else python3)
  --pip-args "ARGS"         more arguments for pip install, e.g. "--no-index --find-links DIR"
  --no-user                 do not create the system user $SERVICE_USER
  --no-systemctl            do not run systemctl (print what to run instead)
  -h, --help                show this help
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
fail() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

prefix=$DEFAULT_PREFIX
unit_dir=/etc/systemd/system
state_dir=$DEFAULT_STATE_DIR
plugnmeet_config=$DEFAULT_PLUGNMEET_CONFIG
python=""
pip_args=""
make_user=1
run_systemctl=1

while [ $# -gt 0 ]; do
  option=$1
  value=""
  case $option in
    --*=*)
      value=${option#*=}
      option=${option%%=*}
      ;;
    --prefix | --unit-dir | --state-dir | --plugnmeet-config | --python | --pip-args)
      [ $# -ge 2 ] || fail "$option needs a value; see --help."
      value=$2
      shift
      ;;
  esac
  case $option in
    --prefix) prefix=$value ;;
    --unit-dir) unit_dir=$value ;;
    --state-dir) state_dir=$value ;;
    --plugnmeet-config) plugnmeet_config=$value ;;
    --python) python=$value ;;
    --pip-args) pip_args=$value ;;
    --no-user) make_user=0 ;;
    --no-systemctl) run_systemctl=0 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) fail "unknown option $option; see --help." ;;
  esac
  shift
done

# --- Checks before anything is changed ---------------------------------------------------

{ [ -f "$SOURCE/gunicorn.conf.py" ] && [ -f "$SOURCE/deploy/$SERVICE" ]; } ||
  fail "$SOURCE is not a checkout of the receiver; run deploy/install.sh from its checkout."

if [ "$(id -u)" -ne 0 ] && { [ $make_user = 1 ] || [ $run_systemctl = 1 ]; }; then
  fail "creating the system user and running systemctl need root: run 'sudo deploy/install.sh' (or pass --no-user and --no-systemctl, with folders you may write)."
fi

# The paths go into unit files and sed expressions: absolute, and plain characters only.
check_path() { # NAME PATH
  case $2 in
    /*) ;;
    *) fail "$1 must be an absolute path, not '$2'." ;;
  esac
  [[ $2 =~ ^[A-Za-z0-9._/+-]+$ ]] ||
    fail "$1 '$2' has a space or another character systemd units cannot hold; pick a path of letters, digits, '.', '_', '-', '+' and '/'."
}
check_path --prefix "$prefix"
check_path --unit-dir "$unit_dir"
check_path --state-dir "$state_dir"
check_path --plugnmeet-config "$plugnmeet_config"
prefix=${prefix%/}
for pair in "--prefix:$prefix" "--unit-dir:$unit_dir" "--state-dir:$state_dir"; do
  name=${pair%%:*}
  dir=${pair#*:}
  if [ -e "$dir" ] && [ ! -d "$dir" ]; then
    fail "$name $dir is a file, not a folder; remove it or pass another $name."
  fi
done

say "Checking Python"
python_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; }
if [ -n "$python" ]; then
  command -v "$python" >/dev/null || fail "--python $python is not a program here; give the path of python3.11 or newer."
  python_ok "$python" || fail "--python $python is not Python 3.11 or newer; give the path of python3.11 or newer."
else
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
      python=$candidate
      break
    fi
  done
  [ -n "$python" ] || fail "Python 3.11 or newer is needed and neither python3.11 nor python3 is one; install it (Debian 12: apt-get install python3 python3-venv; Ubuntu 22.04: apt-get install python3.11 python3.11-venv) or pass --python /path/to/python3.11."
fi
"$python" -c 'import ensurepip, venv' 2>/dev/null ||
  fail "$python cannot make a virtualenv (its venv module is missing); install it, e.g. apt-get install python3-venv (or python3.11-venv), and run this again."
note "$("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# --- The app, its virtualenv ---------------------------------------------------------------

app=$prefix/app
venv=$prefix/venv
env_file=$prefix/webhooks.env
staged=$prefix/app.new
upgrade=0
[ -f "$app/gunicorn.conf.py" ] && upgrade=1
restart_reasons=()

say "Copying the app from $SOURCE to $app"
mkdir -p "$prefix" || fail "cannot make $prefix; check that its parent folder exists and may be written."
rm -rf "$staged"
mkdir -p "$staged"
if git -C "$SOURCE" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -d '' files < <(git -C "$SOURCE" ls-files -z -- "${APP_PATHS[@]}")
else
  mapfile -d '' files < <(cd "$SOURCE" && find "${APP_PATHS[@]}" -name __pycache__ -prune -o -type f -print0)
fi
[ ${#files[@]} -gt 0 ] || fail "found none of the app's files in $SOURCE; run this from a complete checkout."
for file in "${files[@]}"; do
  [ -f "$SOURCE/$file" ] || continue # deleted in the checkout but not yet in git
  install -D -p -m 0644 "$SOURCE/$file" "$staged/$file" # -p: the bytecode checks the time
done
schema_changed=0
if [ $upgrade = 1 ]; then
  for file in "${MASTER_FILES[@]}"; do
    cmp -s "$app/$file" "$staged/$file" || restart_reasons+=("$file changed")
  done
  # A new migration: the database needs 'flask db upgrade' before the new code serves.
  versions=plugnmeet_webhooks/storage/migrations/versions
  migrations() { (cd "$1/$versions" && find . -maxdepth 1 -name '*.py' | sort); }
  [ "$(migrations "$app")" = "$(migrations "$staged")" ] || schema_changed=1
fi

say "Installing the pinned packages into $venv"
if [ -x "$venv/bin/python" ] && python_ok "$venv/bin/python"; then
  note "keeping the virtualenv"
else
  [ -e "$venv" ] && restart_reasons+=("the virtualenv was made again")
  rm -rf "$venv"
  "$python" -m venv "$venv" || fail "$python could not make the virtualenv $venv; see above."
fi
read -r -a extra_pip_args <<<"$pip_args"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$staged/requirements.txt" "${extra_pip_args[@]}" ||
  fail "pip could not install the pinned packages (see above); check the network, or pass --pip-args \"--no-index --find-links DIR\" with a folder of the wheels. Nothing was changed in $app."
"$venv/bin/python" -m compileall -q "$staged" >/dev/null ||
  fail "the copied app does not compile (see above); is the checkout complete?"

say "Updating $app in place"
# The folder itself stays: it is the running master's working directory, which a reload
# needs. Each file is replaced whole (a copy renamed over it), so a worker never reads half
# a file; then what the new copy no longer has goes.
mkdir -p "$app"
changed=0
while IFS= read -r -d '' file; do
  if ! cmp -s "$staged/$file" "$app/$file"; then
    mkdir -p "$(dirname "$app/$file")"
    cp -p "$staged/$file" "$app/$file.installing"
    mv -f "$app/$file.installing" "$app/$file"
    changed=$((changed + 1))
  fi
done < <(cd "$staged" && find . -type f -print0)
removed=0
while IFS= read -r -d '' file; do
  if [ ! -e "$staged/$file" ]; then
    rm -f "$app/$file"
    removed=$((removed + 1))
  fi
done < <(cd "$app" && find . -type f -print0)
find "$app" -mindepth 1 -depth -type d -empty -delete
rm -rf "$staged"
note "$changed files new or changed, $removed removed"

# --- The user, the database's folder, the settings -----------------------------------------

if [ $make_user = 1 ]; then
  say "Creating the system user $SERVICE_USER"
  if getent passwd "$SERVICE_USER" >/dev/null; then
    note "it exists"
  else
    command -v useradd >/dev/null || fail "useradd is missing; install the passwd package, or create the system user $SERVICE_USER yourself and run this again."
    useradd --system --user-group --home-dir "$state_dir" --no-create-home \
      --shell /usr/sbin/nologin --comment "plugNmeet webhook receiver" "$SERVICE_USER"
  fi
else
  say "Not creating the system user $SERVICE_USER (--no-user)"
fi

say "Preparing $state_dir for the database"
mkdir -p "$state_dir"
chmod 0700 "$state_dir"
[ $make_user = 1 ] && chown "$SERVICE_USER:$SERVICE_USER" "$state_dir"

have_plugnmeet_config=0
[ -f "$plugnmeet_config" ] && have_plugnmeet_config=1

if [ -e "$env_file" ]; then
  say "Keeping $env_file (an upgrade never rewrites it)"
else
  say "Writing $env_file"
  temporary=$(mktemp)
  {
    cat <<EOF
# Settings of the plugNmeet webhook receiver (plugnmeet-webhooks.service): one NAME=value a
# line, the variables of docs/configuration.md. They are read when the service starts:
# after a change, run 'systemctl restart plugnmeet-webhooks'. deploy/install.sh wrote this
# file once; upgrades keep it.

PNM_DATABASE_URL=sqlite:///$state_dir/webhooks.db

EOF
    if [ $have_plugnmeet_config = 1 ]; then
      cat <<EOF
# The key pair (client.api_key, client.secret) is read from plugNmeet's config.yaml,
# $plugnmeet_config, which systemd passes to the service as a credential, with
# PNM_PLUGNMEET_CONFIG set in
#   $unit_dir/$SERVICE.d/$DROP_IN
# Set neither PNM_PLUGNMEET_CONFIG nor PNM_API_KEY/PNM_API_SECRET here.
EOF
    else
      cat <<EOF
# The key pair: client.api_key and client.secret of the plugNmeet server's config.yaml
# (on this host, deploy/install.sh would have it read from there).
#PNM_API_KEY=plugnmeet
#PNM_API_SECRET=
EOF
    fi
    cat <<EOF

# gunicorn worker processes, and request threads in each.
#WEB_CONCURRENCY=2
#PNM_WORKER_THREADS=16
# The address is the socket's (plugnmeet-webhooks.socket); HOST and PORT are not used.

#PNM_LOG_FORMAT=json
# Turns on the report API and the dashboard; make one with: openssl rand -hex 32
#PNM_ADMIN_TOKEN=
#PNM_METRICS_TOKEN=
#PNM_RETENTION_DAYS=365
#PNM_RULES_FILE=$prefix/rules.toml
# Invoices (PDFs need the system's Pango: apt-get install libpango-1.0-0 libpangoft2-1.0-0)
#PNM_BILLING_FILE=$prefix/billing.toml
# Reconciliation with plugNmeet's API (the address its clients use).
#PNM_PLUGNMEET_URL=https://plugnmeet.example.com
EOF
  } >"$temporary"
  if [ $make_user = 1 ]; then
    install -m 0640 -o root -g "$SERVICE_USER" "$temporary" "$env_file"
  else
    install -m 0640 "$temporary" "$env_file"
  fi
  rm -f "$temporary"
fi

# --- The units ------------------------------------------------------------------------------

say "Installing the systemd units into $unit_dir"
render() { # SOURCE-FILE: the shipped unit, with this installation's paths
  local state_lines
  if [[ $state_dir == /var/lib/?* ]]; then
    state_lines="s|^StateDirectory=.*|StateDirectory=${state_dir#/var/lib/}|"
  else # StateDirectory= names folders under /var/lib only
    state_lines="s|^StateDirectory=.*|ReadWritePaths=$state_dir|; /^StateDirectoryMode=/d"
  fi
  sed -e "s|$DEFAULT_PREFIX|$prefix|g" \
    -e "s|$DEFAULT_PLUGNMEET_CONFIG|$plugnmeet_config|g" \
    -e "s|$DEFAULT_STATE_DIR|$state_dir|g" \
    -e "$state_lines" "$1"
}
mkdir -p "$unit_dir"
units_changed=()
socket_changed=0
install_unit() { # SHIPPED-NAME INSTALLED-PATH
  local rendered
  rendered=$(mktemp)
  render "$SOURCE/deploy/$1" >"$rendered"
  if ! cmp -s "$rendered" "$2"; then
    units_changed+=("$2")
    [ "$1" = "$SOCKET" ] && [ -e "$2" ] && socket_changed=1
    install -D -m 0644 "$rendered" "$2"
    note "$2"
  else
    note "$2 (unchanged)"
  fi
  rm -f "$rendered"
}
install_unit "$SOCKET" "$unit_dir/$SOCKET"
install_unit "$SERVICE" "$unit_dir/$SERVICE"
drop_in=$unit_dir/$SERVICE.d/$DROP_IN
if [ $have_plugnmeet_config = 1 ]; then
  install_unit "$SERVICE.d/$DROP_IN" "$drop_in"
  note "the key pair comes from $plugnmeet_config"
elif [ -e "$drop_in" ]; then
  rm -f "$drop_in"
  units_changed+=("$drop_in")
  note "removed $drop_in: $plugnmeet_config is gone"
fi
[ $upgrade = 1 ] && [ ${#units_changed[@]} -gt 0 ] && restart_reasons+=("the units changed")

# --- Are the settings complete? --------------------------------------------------------------

say "Checking the settings"
# The environment the service gets: webhooks.env over the drop-in's PNM_PLUGNMEET_CONFIG.
settings_ok=1
credential=""
[ $have_plugnmeet_config = 1 ] && credential=$plugnmeet_config
if ! settings_error=$(cd "$app" && env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
  "$venv/bin/python" - "$env_file" "$credential" 2>&1 <<'PY'
import os
import shlex
import sys

env_file, plugnmeet_config = sys.argv[1], sys.argv[2]
if plugnmeet_config:
    os.environ["PNM_PLUGNMEET_CONFIG"] = plugnmeet_config
with open(env_file, encoding="utf-8") as lines:
    for line in lines:
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            name, value = line.split("=", 1)
            words = shlex.split(value) if value.strip() else [""]
            os.environ[name.strip()] = " ".join(words)
import config  # after the environment is set

sys.exit(config.main())
PY
); then
  settings_ok=0
fi
[ -n "$settings_error" ] && printf '%s\n' "$settings_error" | sed 's/^/    /'

# --- systemd -------------------------------------------------------------------------------

start=(systemctl enable --now "$SOCKET" "$SERVICE")
if [ $run_systemctl = 1 ]; then
  { command -v systemctl >/dev/null && [ -d /run/systemd/system ]; } ||
    fail "systemd is not running on this host; pass --no-systemctl and start the service another way."
  say "Telling systemd"
  systemctl daemon-reload
  if [ $settings_ok = 0 ]; then
    systemctl enable --quiet "$SOCKET" "$SERVICE"
  elif systemctl is-active --quiet "$SERVICE"; then
    if [ $schema_changed = 1 ]; then
      note "not reloading $SERVICE: the new version changes the database schema."
      note "$SCHEMA_UPGRADE"
    elif [ ${#restart_reasons[@]} -gt 0 ]; then
      note "restarting $SERVICE: $(
        IFS=,
        echo "${restart_reasons[*]}"
      ) (deliveries wait in the socket's queue)"
      systemctl restart "$SERVICE"
    else
      note "reloading $SERVICE: new workers run the new code; the socket stays open"
      systemctl reload "$SERVICE"
    fi
    systemctl enable --quiet "$SOCKET" "$SERVICE"
  else
    "${start[@]}"
  fi
  if [ $socket_changed = 1 ] && systemctl is-active --quiet "$SOCKET"; then
    note "$SOCKET changed; it takes effect once the socket is made again (queued deliveries are refused meanwhile):"
    note "  systemctl stop $SERVICE $SOCKET && systemctl start $SOCKET $SERVICE"
  fi
else
  say "Not running systemctl (--no-systemctl); run:"
  note "systemctl daemon-reload"
  if [ $schema_changed = 1 ]; then
    note "# the new version changes the database schema: $SCHEMA_UPGRADE"
  elif [ $upgrade = 1 ]; then
    if [ ${#restart_reasons[@]} -gt 0 ]; then
      note "systemctl restart $SERVICE   # $(
        IFS=,
        echo "${restart_reasons[*]}"
      )"
    else
      note "systemctl reload $SERVICE"
    fi
  fi
  note "${start[*]}"
fi

# --- Where plugNmeet should send ------------------------------------------------------------

# The socket's address, drop-ins included (an empty ListenStream= clears the ones before).
listen=""
for unit_file in "$unit_dir/$SOCKET" "$unit_dir/$SOCKET.d"/*.conf; do
  while IFS= read -r line; do
    case $line in
      ListenStream=*)
        value=${line#ListenStream=}
        value=${value//[[:space:]]/}
        if [ -z "$value" ]; then listen=""; elif [ -z "$listen" ]; then listen=$value; fi
        ;;
    esac
  done <"$unit_file"
done
case $listen in
  /* | @*) address="" ;;                                    # a Unix socket
  *[!0-9]*) address=$listen ;;                              # host:port
  *) address=127.0.0.1:$listen ;;                           # a port alone: every address
esac
address=${address/#0.0.0.0:/127.0.0.1:}
address=${address/#\[::\]:/127.0.0.1:}
webhook_path=$(sed -n 's/^[[:space:]]*PNM_WEBHOOK_PATH=[[:space:]]*//p' "$env_file" | tail -n 1)
webhook_path=${webhook_path//[\"\']/}
url="http://${address}${webhook_path:-/webhook-listener}"

cat <<EOF

The receiver is installed in $prefix.

Point plugNmeet at it: in $plugnmeet_config, under client:, add (this script does
not edit plugNmeet's file)

  client:
    webhook_conf:
      enable: true
      url: "$url"
      enable_for_per_meeting: false

then restart plugNmeet: systemctl restart plugnmeet

Check it:
  systemctl status plugnmeet-webhooks
  journalctl -u plugnmeet-webhooks -f
EOF
cat <<EOF
  curl -s http://$address/readyz        # {"status": "ready"} once the database is current
  # then start a meeting in plugNmeet: the journal shows "Room '…' created", and so on.
  # (A sample sent by hand with 'flask --app app send' would be stored as a real event.)
EOF
[ -n "$address" ] || printf '\nerror: %s listens on %s, a Unix socket plugNmeet cannot send to; give it a TCP address (see the comment in %s).\n' "$SOCKET" "${listen:-nothing}" "$unit_dir/$SOCKET" >&2

if [ $settings_ok = 0 ]; then
  cat >&2 <<EOF

error: installed, but not started: the settings are not complete (see "Checking the
settings" above). Fix $env_file, then run:
  ${start[*]}
EOF
  exit 1
fi
[ -n "$address" ] || exit 1
exit 0
