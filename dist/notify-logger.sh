#!/bin/sh
# fmagent notify hook: one syslog line per event
# (/usr/share/doc/fmagent/hooks.md).
#
# Configure it in /etc/fmagent/fmagent.toml:
#
#   [[hooks]]
#   command = "/usr/libexec/fmagent/notify-logger.sh"
#   on = ["node", "link", "role", "alarm"]
#   timeout = "5s"
#
# The event comes in FMAGENT_* environment variables and as one JSON object
# on stdin. A hook must finish quickly: it is killed after its timeout, and
# while it runs, later events for it wait in its queue.
set -eu

case "${FMAGENT_EVENT}:${FMAGENT_ACTION}" in
alarm:raise)
	prio=user.warning
	[ "${FMAGENT_SEVERITY}" = critical ] && prio=user.crit
	msg="alarm ${FMAGENT_CAUSE} (${FMAGENT_SEVERITY}) raised on ${FMAGENT_ENTITY} by node ${FMAGENT_BY}" ;;
alarm:clear)
	prio=user.notice
	msg="alarm ${FMAGENT_CAUSE} cleared on ${FMAGENT_ENTITY}" ;;
node:down | link:down | state:down)
	prio=user.warning
	msg="${FMAGENT_ENTITY} is down" ;;
role:*)
	prio=user.notice
	msg="${FMAGENT_ACTION}: this node is ${FMAGENT_ROLE}, master ${FMAGENT_MASTER}, epoch ${FMAGENT_EPOCH}" ;;
*)
	prio=user.info
	msg="${FMAGENT_ENTITY:-cluster} ${FMAGENT_ACTION}" ;;
esac

logger -t fmagent-notify -p "$prio" -- "node ${FMAGENT_NODE} seq ${FMAGENT_SEQ}: $msg"

# Webhook-style: post the event as it came (JSON on stdin) to a chat or an
# incident tool. Uncomment and set the URL; keep -m below the hook's timeout.
# curl -fsS -m 4 -H 'Content-Type: application/json' --data-binary @- \
#	https://hooks.example.invalid/fmagent
