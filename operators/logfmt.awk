#!/usr/bin/awk -f
# logfmt.awk - turn logfmt lines into JSON objects, one message per line.
#
# A loom `command:` operator (see README.md). The message body arrives on stdin; each
# line of key=value pairs becomes one JSON object on stdout:
#
#   level=error msg="disk full" host=nas free=0.5 degraded
#   -> {"level":"error","msg":"disk full","host":"nas","free":0.5,"degraded":true}
#
# Values are strings, except unquoted numbers (kept as JSON numbers) and bare keys
# (true). In quoted values \" \\ and \n are escapes. Lines without any key=value pair
# are skipped and named on stderr. When no line of the body was logfmt the operator
# exits 1, which drops the message.
#
# POSIX awk only; no gawk extensions. Values are consumed with match(), not a
# character at a time, so a line of megabytes stays fast.

BEGIN {
    # Control characters other than tab, newline and carriage return become spaces.
    for (code = 1; code < 32; code++)
        if (code != 9 && code != 10 && code != 13) CONTROL = CONTROL sprintf("%c", code)
    CONTROL_RE = "[" CONTROL "]"
}

# Replace every match of regular expression `re` in `s` by the literal text `rep`
# (split and join, because backslashes in a gsub replacement are not portable).
function replace_all(s, re, rep,    parts, n, i, out) {
    n = split(s, parts, re)
    if (n == 0) return ""
    out = parts[1]
    for (i = 2; i <= n; i++) out = out rep parts[i]
    # split() drops nothing at the ends, except when s ends with a separator in some
    # awks; put the trailing replacement back if so.
    if (length(out) < length(s) && match(s, re "$")) out = out rep
    return out
}

function json_string(s) {
    s = replace_all(s, "\\\\", "\\\\")
    s = replace_all(s, "\"", "\\\"")
    s = replace_all(s, "\t", "\\t")
    s = replace_all(s, "\r", "\\r")
    s = replace_all(s, "\n", "\\n")
    gsub(CONTROL_RE, " ", s)
    return "\"" s "\""
}

function json_value(v, quoted) {
    if (!quoted && v ~ /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) return v
    return json_string(v)
}

# Undo the escapes of a quoted value: \" -> "   \\ -> \   \n -> newline.
function unescape(v,    out, p, c) {
    out = ""
    while ((p = index(v, "\\")) > 0) {
        c = substr(v, p + 1, 1)
        out = out substr(v, 1, p - 1) (c == "n" ? "\n" : c)
        v = substr(v, p + 2)
    }
    return out v
}

# Parse one line into the global arrays keys, vals, bare, quote (1..n); return n.
function parse(rest,    n) {
    n = 0
    while (1) {
        sub(/^ +/, "", rest)
        if (rest == "") break
        match(rest, /^[^ =]+/)
        if (RSTART == 0) { rest = substr(rest, 2); continue }  # a stray "="
        n++
        keys[n] = substr(rest, 1, RLENGTH)
        rest = substr(rest, RLENGTH + 1)
        bare[n] = 0
        quote[n] = 0
        if (substr(rest, 1, 1) != "=") { bare[n] = 1; continue }
        rest = substr(rest, 2)
        if (substr(rest, 1, 1) == "\"") {
            quote[n] = 1
            if (match(rest, /^"([^"\\]|\\.)*"/)) {
                vals[n] = unescape(substr(rest, 2, RLENGTH - 2))
                rest = substr(rest, RLENGTH + 1)
            } else {
                vals[n] = unescape(substr(rest, 2))  # unterminated: up to the end
                rest = ""
            }
        } else {
            match(rest, /^[^ ]*/)
            vals[n] = substr(rest, 1, RLENGTH)
            rest = substr(rest, RLENGTH + 1)
        }
    }
    return n
}

{
    sub(/\r$/, "")
    n = parse($0)
    pairs = 0
    for (k = 1; k <= n; k++) if (!bare[k]) pairs++
    if (pairs == 0) {
        if ($0 != "") printf "logfmt: line %d is not logfmt, skipped\n", NR > "/dev/stderr"
        next
    }
    out = "{"
    for (k = 1; k <= n; k++) {
        if (k > 1) out = out ","
        out = out json_string(keys[k]) ":" (bare[k] ? "true" : json_value(vals[k], quote[k]))
    }
    print out "}"
    emitted++
}

END {
    if (!emitted) {
        print "logfmt: no key=value pairs in the message" > "/dev/stderr"
        exit 1
    }
}
