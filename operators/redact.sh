#!/bin/sh
# redact.sh - mask e-mail addresses, IPv4 addresses and secrets in text.
#
# A loom `command:` operator (see README.md): the message body arrives on stdin, the
# redacted text goes to stdout, one message per output line. Exit 0 always forwards;
# a non-zero exit (sed failing) drops the message and stderr is logged.
#
# Masked:
#   someone@example.org              -> [email]
#   192.168.1.20                     -> [ip]
#   password=hunter2, token=abc ...  -> password=[redacted], token=[redacted]
#   "api_key": "abc"                 -> "api_key": "[redacted]"
#   Authorization: Bearer abc        -> Authorization: Bearer [redacted]
#
# Only POSIX sh and POSIX sed (basic regular expressions), so it runs under dash,
# busybox and the BSDs alike.

set -u

script='s/[A-Za-z0-9._%+-]\{1,\}@[A-Za-z0-9-]\{1,\}\(\.[A-Za-z0-9-]\{1,\}\)*\.[A-Za-z]\{2,\}/[email]/g'
script="$script
s/[0-9]\{1,3\}\.[0-9]\{1,3\}\.[0-9]\{1,3\}\.[0-9]\{1,3\}/[ip]/g
s/\([Bb][Ee][Aa][Rr][Ee][Rr]\) [A-Za-z0-9._~+\/=-]\{1,\}/\1 [redacted]/g"

for key in password passwd pwd secret token api_key apikey access_key private_key; do
    # key=value and key: value (logfmt, URLs, YAML-ish logs), then "key": "value" (JSON).
    script="$script
s/\($key[\"']\{0,1\}[ ]*[=:][ ]*\)\([^\" ,;&'][^ ,;&\"']*\)/\1[redacted]/g
s/\(\"$key\"[ ]*:[ ]*\"\)[^\"]*\"/\1[redacted]\"/g"
done

LC_ALL=C exec sed -e "$script"
