#!/bin/sh
# Handler for test/t/008_worker_command.pl: what it does depends on the
# step's name.  HANDLER_DIR is a directory of the test for marker files.
D=$HANDLER_DIR
input=$(cat)
case "$ORCHESTRATOR_STEP" in
ok)
	printf '{"input": %s, "run": "%s", "step": "%s", "attempt": %s, "workflow": "%s", "queue": "%s", "traceparent": "%s"}\n' \
		"$input" "$ORCHESTRATOR_RUN_ID" "$ORCHESTRATOR_STEP" "$ORCHESTRATOR_ATTEMPT" \
		"$ORCHESTRATOR_WORKFLOW" "$ORCHESTRATOR_QUEUE" "${TRACEPARENT:-none}" ;;
empty) ;;
huge)
	# a result over the 16 MB the worker accepts
	printf '"'
	head -c 17000000 /dev/zero | tr '\0' a
	printf '"' ;;
fail)
	echo "first line" >&2
	echo "boom: attempt $ORCHESTRATOR_ATTEMPT" >&2
	exit 3 ;;
notjson) echo "this is not JSON" ;;
signal) kill -TERM $$ ;;
noisy)
	i=0
	while [ $i -lt 2000 ]; do echo "line $i of noise on stderr, to be cut" >&2; i=$((i + 1)); done
	echo "the last line" >&2
	exit 1 ;;
beat)
	sleep 3
	echo '{"beat": true}' ;;
conc*)
	# wait (30 s at most) until the three steps of this run run at once
	touch "$D/conc.$ORCHESTRATOR_RUN_ID.$ORCHESTRATOR_STEP"
	i=0 n=0
	while [ $i -lt 600 ]; do
		n=$(ls "$D" | grep -c "^conc\.$ORCHESTRATOR_RUN_ID\.")
		[ "$n" -ge 3 ] && break
		sleep 0.05
		i=$((i + 1))
	done
	echo "{\"peers\": $n}" ;;
slow|hang)
	touch "$D/$ORCHESTRATOR_STEP.started"
	while :; do sleep 0.1; done ;;
killed)
	if [ "$ORCHESTRATOR_ATTEMPT" = 1 ]; then
		touch "$D/killed.started"
		while :; do sleep 0.1; done
	fi
	echo "{\"attempt\": $ORCHESTRATOR_ATTEMPT}" ;;
cancelme)
	trap 'touch "$D/cancelme.terminated"; exit 1' TERM
	touch "$D/cancelme.started"
	while :; do sleep 0.1; done ;;
gated)
	touch "$D/gated.started"
	while [ ! -f "$D/gated.go" ]; do sleep 0.05; done
	echo '{"gated": true}' ;;
held)
	touch "$D/held.started"
	while [ ! -f "$D/held.go" ]; do sleep 0.05; done
	echo '{"held": true}' ;;
term)
	touch "$D/term.started.$ORCHESTRATOR_RUN_ID"
	while [ ! -f "$D/term.go" ]; do sleep 0.05; done
	echo '{"graceful": true}' ;;
*)
	echo "unknown step $ORCHESTRATOR_STEP" >&2
	exit 2 ;;
esac
