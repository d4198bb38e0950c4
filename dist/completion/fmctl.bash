# bash completion for fmctl (installed as
# /usr/share/bash-completion/completions/fmctl). Commands and flags are
# read from `fmctl help` itself, so they follow the installed version;
# entity names come from the running agent (`fmctl -o json entities`).

_fmctl_commands() {
	fmctl help 2>/dev/null | awk '/^Commands:/{on=1; next} on && /^$/{exit} on {sub(/^  /,""); split($0, w, /[ ,]+/); print w[1]; if (w[2] != "" && w[2] !~ /^\[/ && $0 ~ /^[a-z]+, /) print w[2]}'
}

_fmctl_flags() {
	# Global flags, and the command's own when one is given.
	fmctl help ${1:+"$1"} 2>/dev/null | awk '/^  -[a-z]/{print $1}'
	[ -n "$1" ] && fmctl help 2>/dev/null | awk '/^  -[a-z]/{print $1}'
}

_fmctl_entities() {
	fmctl -o json -timeout 1s entities 2>/dev/null | tr ',' '\n' | sed -n 's/.*"name": *"\([^"]*\)".*/\1/p'
}

_fmctl() {
	local cur prev cmd i
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	# The command: the first word that is not a flag or a flag's value.
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-socket|-o|-timeout) ((i++)) ;;
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done
	case $prev in
	-socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	-o) COMPREPLY=($(compgen -W "table json" -- "$cur")); return ;;
	-timeout) COMPREPLY=($(compgen -W "1s 5s 30s 0" -- "$cur")); return ;;
	-severity) COMPREPLY=($(compgen -W "critical major minor warning indeterminate" -- "$cur")); return ;;
	-kind) COMPREPLY=($(compgen -W "node link process service custom" -- "$cur")); return ;;
	-state) COMPREPLY=($(compgen -W "up down" -- "$cur")); return ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_fmctl_flags "$cmd")" -- "$cur"))
		return
	fi
	if [ -z "$cmd" ]; then
		COMPREPLY=($(compgen -W "$(_fmctl_commands)" -- "$cur"))
		return
	fi
	case $cmd in
	help) COMPREPLY=($(compgen -W "$(_fmctl_commands)" -- "$cur")) ;;
	get|unregister|report|raise|clear|up|down) COMPREPLY=($(compgen -W "$(_fmctl_entities)" -- "$cur")) ;;
	esac
}
complete -F _fmctl fmctl
