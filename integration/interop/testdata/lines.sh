#!/bin/sh
# The line program of the exec interop tests: the same on every peer.
# It greets, answers each line, prints two lines for "two", writes to
# stderr for "err", and exits with status 3 after "quit".
echo "hello from the program"
while IFS= read -r line; do
	case "$line" in
	quit)
		echo "bye"
		exit 3
		;;
	two)
		echo "first of two"
		echo "second of two"
		;;
	env)
		echo "uri=$REQUEST_URI"
		echo "remote=$REMOTE_ADDR"
		;;
	err)
		echo "to stderr" >&2
		echo "wrote to stderr"
		;;
	*)
		echo "got: $line"
		;;
	esac
done
echo "stdin closed"
