#!/bin/sh
# The program behind the demo's web terminal (Caddyfile.example runs it with
# `exec /bin/sh examples/demo/terminal.sh { mode pty ... }`).
#
# It is a fixed menu and deliberately NOT a shell: the demo lets anyone who
# can open the page start it (allow_anonymous), and a shell there would give
# every visitor a command line on this machine. Nothing typed here is ever
# run, evaluated or expanded: input is only compared with the menu keys and
# printed back with printf '%s'. Keep it that way; put a real shell behind
# authentication only (see docs/exec.md).

menu() {
	printf '\n\033[1mcaddyws demo terminal\033[0m (a menu, not a shell)\n'
	printf '  1) date and time\n'
	printf '  2) system info (uptime, load)\n'
	printf '  3) echo what you type\n'
	printf '  4) terminal size (stty size)\n'
	printf '  q) quit\n'
}

menu
while :; do
	printf 'choice> '
	IFS= read -r choice || exit 0
	case "$choice" in
	1) date ;;
	2)
		printf 'system: %s\n' "$(uname -sr)"
		if [ -r /proc/uptime ]; then
			read -r up _ </proc/uptime
			printf 'up %s seconds\n' "${up%.*}"
		fi
		[ -r /proc/loadavg ] && printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
		;;
	3)
		printf 'type a line: '
		IFS= read -r line || exit 0
		printf 'you typed: %s\n' "$line"
		;;
	4) printf 'rows columns: %s\n' "$(stty size)" ;;
	q | quit | exit) printf 'bye\n'; exit 0 ;;
	'') ;;
	*)
		printf 'not a menu choice: %s\n' "$choice"
		menu
		;;
	esac
done
