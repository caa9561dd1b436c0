#!/bin/sh
# The test suite talks to a real Redis and a real Postgres. Start them when they are
# installed here but not running; say clearly what is missing otherwise.
# Override where they are with TEST_REDIS_URL / TEST_DATABASE_URL.
set -e
if [ -n "$TEST_REDIS_URL" ] && [ -n "$TEST_DATABASE_URL" ]; then exit 0; fi

pg_up() { pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis on 127.0.0.1:6379" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  else
    echo "Redis is not running on 127.0.0.1:6379 and redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
  fi
fi
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL on 127.0.0.1:5432" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 (apt-get install postgresql)" >&2
    exit 1
  fi
fi
i=0
until redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && pg_up; do
  i=$((i + 1))
  if [ "$i" -gt 60 ]; then echo "Redis or PostgreSQL did not come up" >&2; exit 1; fi
  sleep 0.5
done

# The Kubernetes manifests are rendered by `kubectl kustomize` (kustomize v5, kubectl
# 1.27 or newer) in the tests; Debian's kubernetes-client is too old for them.
command -v kubectl >/dev/null 2>&1 ||
  echo "kubectl is not installed: test/deploy/kubernetes.test.ts will fail (kubectl 1.27+ from pkgs.k8s.io)" >&2
