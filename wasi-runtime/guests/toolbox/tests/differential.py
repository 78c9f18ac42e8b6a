#!/usr/bin/env python3
"""Differential tests: the toolbox against the real GNU tools of this machine.

Builds the toolbox natively (rustc from PATH) and, when /usr/bin/rustc (Debian's 1.63 with
the wasm32-wasi std) is present, as toolbox.wasm. Every case is a small shell command line run
with `bash -c` (echo/printf/test/[/true/false/pwd builtins disabled) in a directory of fixture
files, once with the toolbox commands first in PATH and once with the GNU tools, under
LC_ALL=C and TZ=UTC. stdout and the exit status must be identical; stderr is compared too and
reported separately (strictly required only for cases marked 'err').

  python3 tests/differential.py            # native build vs GNU
  python3 tests/differential.py --wasm     # also the wasm build (via tests/wasm_run.py)
  python3 tests/differential.py -k grep    # only cases whose command contains 'grep'
  python3 tests/differential.py -v         # show diffs of failures

Normalisations (per case flags):
  lsl   GNU's "root root" owner/group columns become "user user" (the toolbox prints 'user';
        WASI has no owners).
  sort  output lines are sorted before comparing (GNU find/grep -r/du/rm -v walk directories in
        readdir order; the toolbox walks them in byte order of names).
  nowasm  skipped for the wasm build (needs host paths, exec bits, real uids, ...).
  mut   the case changes files: it runs in a fresh copy of the fixtures.
"""
import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.path.join(ROOT, "target")

COMMANDS = ["[", "basename", "cat", "cp", "cut", "date", "dirname", "du", "echo", "env", "false", "find",
            "grep", "egrep", "fgrep", "head", "ls", "mkdir", "mv", "printf", "pwd", "rm", "rmdir", "seq",
            "sleep", "sort", "stat", "tail", "tee", "test", "touch", "tr", "true", "uniq", "wc", "which", "yes"]

OLD = "2024-01-15 10:30:00"

# (command line, flags)
T = []


def t(cmd, *flags):
    T.append((cmd, set(flags)))


# ---- echo
t("echo hello world")
t("echo -n no newline")
t("echo -e 'a\\tb\\nc\\x41\\101\\0101\\q'")
t("echo -E 'a\\tb'")
t("echo -ne 'x\\cY'")
t("echo -- -n")
t("echo -nx a")
t("echo")
# ---- printf
t("printf '%s-%s\\n' a b c")
t("printf '%d %i %u %x %X %o\\n' 42 -7 3 255 255 8")
t("printf '%5.2s|%-5d|%+d|% d|%05d|%.3d|%#x|%#o\\n' abc 3 4 5 -6 7 255 8")
t("printf '%f %.2f %e %.3E %g %g %g %G\\n' 3.14159 2.5 12345.678 0.00012 0.0001 100000 1e6 1e-5")
t("printf '%10.3f|%-10.2e|%#g|%.0f\\n' 3.14159 1234.5 1 2.5")
t("printf '%c%c\\n' hello world")
t("printf '%b\\n' 'a\\tb' 'c\\0101'")
t("printf '%q\\n' 'a b' \"it's\" plain", "err")
t("printf '%*d|%-*d|%.*f\\n' 5 1 4 2 2 3.14159")
t("printf '%d\\n' \"'a\" 0x10 010 -0x1f")
t("printf '%d\\n' abc 1.5", "err")
t("printf '%s\\n'")
t("printf 'a\\n' b c", "err")
t("printf '%%|%5%|\\n'")
t("printf '\\u00e9\\x41\\101\\n'")
t("printf")
t("printf '%z'", "err")
t("printf '%s %s\\n' 1 2 3")
t("printf '%x\\n' -1")
# ---- cat
t("cat a.txt")
t("cat a.txt nonl.txt empty.txt")
t("cat -n a.txt nonl.txt")
t("cat -b spaced.txt")
t("cat -s spaced.txt")
t("cat -A tabs.txt unicode.txt")
t("cat -E a.txt")
t("cat -T tabs.txt")
t("cat -v bin.dat")
t("cat -ns spaced.txt")
t("cat nonexistent a.txt", "err")
t("cat dir", "err")
t("cat < a.txt")
t("echo stdin | cat a.txt - nonl.txt")
t("cat -z a.txt", "err")
t("cat --foo a.txt", "err")
t("cat --number a.txt")
# ---- ls
t("ls")
t("ls -a")
t("ls -A")
t("ls -1 dir")
t("ls -R dir")
t("ls -d dir a.txt")
t("ls -r")
t("ls -S")
t("ls -t")
t("ls -tr")
t("ls -l", "lsl", "nowasm")
t("ls -la dir", "lsl")
t("ls -l dir/sub", "lsl")
t("ls -lh big.txt a.txt dir", "lsl")
t("ls -ld dir link dirlink", "lsl")
t("ls -l link dirlink", "lsl")
t("ls dirlink")
t("ls -lS dir", "lsl")
t("ls -lt dir", "lsl")
t("ls -lR dir", "lsl")
t("ls -p dir")
t("ls -F", "nowasm")
t("ls -lF dir link dirlink", "lsl")
t("ls -s dir")
t("ls -sh dir")
t("ls -x")
t("ls -C")
t("ls -C dir/sub dir")
t("ls -m")
t("ls -w 40 -C")
t("ls nonexistent a.txt", "err")
t("ls -z", "err")
t("ls --foo", "err")
t("ls -U dir/sub/deep")
t("ls -X dir")
t("ls -g dir", "lsl")
t("ls -o dir", "lsl")
t("ls --full-time a.txt", "lsl")
t("ls -l --time-style=full-iso a.txt", "lsl")
t("ls -1 --group-directories-first dir")
t("ls -n a.txt", "nowasm")
t("ls -i a.txt >/dev/null")
t("ls -l empty.txt 'with space.txt'", "lsl")
t("ls -a dir/sub")
t("ls dir/sub dir/one.txt")
# ---- head / tail
t("head big.txt")
t("head -n 3 a.txt")
t("head -3 big.txt")
t("head -c 5 a.txt")
t("head -n -95 big.txt")
t("head -c -3 a.txt")
t("head a.txt nonl.txt")
t("head -q -n1 a.txt nonl.txt")
t("head -v -n1 a.txt")
t("head -n 1 nonexistent a.txt", "err")
t("head -n x a.txt", "err")
t("head -n 1k big.txt | wc -l")
t("seq 5 | head -n 2")
t("tail big.txt")
t("tail -n 3 a.txt")
t("tail -n +98 big.txt")
t("tail -c 6 a.txt")
t("tail -c +3 nonl.txt")
t("tail -3 big.txt")
t("tail +99 big.txt")
t("tail -n 2 nonl.txt")
t("tail a.txt nonl.txt")
t("tail -n 0 a.txt")
t("seq 10 | tail -n 2")
t("tail -c 2x a.txt", "err")
t("tail -q -n1 a.txt big.txt")
# ---- wc
t("wc a.txt")
t("wc -l a.txt")
t("wc -w a.txt nonl.txt")
t("wc -c a.txt big.txt empty.txt")
t("wc -m unicode.txt")
t("wc -L a.txt tabs.txt")
t("wc < a.txt", "nowasm")  # hybox always gives the guest a pipe: width 7 like GNU on a pipe
t("cat a.txt | wc")
t("cat a.txt | wc -l")
t("wc a.txt nonexistent", "err")
t("wc -lwc data.csv big.txt")
t("wc bin.dat unicode.txt")
# ---- grep
t("grep hello a.txt")
t("grep -i hello a.txt")
t("grep -v hello a.txt")
t("grep -n o a.txt")
t("grep -c o a.txt nonl.txt")
t("grep -r three dir", "sort")
t("grep -R three dir", "sort")
t("grep -rl txt dir", "sort")
t("grep -L hello a.txt nonl.txt data.csv")
t("grep -l hello a.txt nonl.txt data.csv")
t("grep -E 'ab|cd' words.txt")
t("grep -E '^(foo|Hello) ' a.txt")
t("grep 'o\\+' a.txt")
t("grep 'l\\{2\\}' a.txt")
t("grep -E 'l{2,}' a.txt")
t("grep -F '.*' regex.txt")
t("grep '.*x' regex.txt")
t("grep -w foo words.txt")
t("grep -x foo words.txt")
t("grep -o 'o.' a.txt")
t("grep -ob o a.txt")
t("grep -q hello a.txt")
t("grep -q nomatch a.txt")
t("grep -s hello nonexistent a.txt", "err")
t("grep hello nonexistent a.txt", "err")
t("grep -H foo a.txt")
t("grep -h o a.txt nonl.txt")
t("grep '[[:digit:]]\\+' data.csv")
t("grep '[[:upper:]]' a.txt mixed.txt")
t("grep '^[^a-m]' words.txt")
t("grep 'a$' words.txt")
t("grep -e foo -e bar a.txt")
t("grep -n -C1 -e 25 data.csv")
t("grep -A1 alice data.csv")
t("grep -B2 dave data.csv")
t("grep -m1 o a.txt")
t("grep -c '' empty.txt")
t("grep '' nonl.txt")
t("grep '\\(ab\\)\\1' words.txt")
t("grep -E '(a|b)\\1' words.txt")
t("grep -E 'x{0}y' regex.txt")
t("grep '\\<ba' words.txt")
t("grep 'oo\\>' words.txt")
t("grep -i 'HÉLLO' unicode.txt")
t("grep 'caf' unicode.txt")
t("grep -z -c a a.txt")
t("grep abc bin.dat", "err")
t("grep -a def bin.dat")
t("grep -c abc bin.dat")
t("grep -P '\\d+' data.csv")
t("grep -E '[0-9]{2},' data.csv")
t("grep --foo x a.txt", "err")
t("grep -E 'a(' a.txt", "err")
t("grep 'a\\{1' a.txt", "err")
t("grep x dir", "err")
t("grep -ow 'o*' a.txt")
t("echo abcd | grep -oE 'ab|abcd'")
t("grep -v -c o a.txt")
t("grep -n '' nonl.txt")
t("grep -rn hello . --include='*.txt'", "sort")
t("grep -r --exclude-dir=sub txt dir", "sort")
t("grep -E '^$' spaced.txt -c")
t("grep -e '' -c a.txt")
t("grep -x -F 'foo bar' a.txt")
t("grep -i -w HELLO a.txt")
t("egrep 'ab|cd' words.txt")
t("fgrep '.*' regex.txt")
t("grep '[]x]' regex.txt")
t("grep '[a-]' regex.txt")
t("grep '\\.' regex.txt")
t("grep -E 'a+?' regex.txt")
# ---- sort
t("sort words.txt")
t("sort -r words.txt")
t("sort -n nums.txt")
t("sort -rn nums.txt")
t("sort -u words.txt")
t("sort -f mixed.txt")
t("sort mixed.txt")
t("sort -t, -k2 -n data.csv")
t("sort -t, -k3,3 -k1,1 data.csv")
t("sort -k2 kv.txt")
t("sort -k2n kv.txt")
t("sort -k2,2n -k1,1r kv.txt")
t("sort -k1.2 kv.txt")
t("sort -h human.txt")
t("sort -g nums.txt")
t("sort -nu nums.txt")
t("sort -s -k1,1 kv.txt")
t("sort -c words.txt", "err")
t("sort -c sorted.txt")
t("sort -M months.txt")
t("sort -V versions.txt")
t("sort -b -k2 kv.txt")
t("sort -t ab x", "err")
t("sort --foo", "err")
t("sort -z nums.txt | tr '\\0' '|'")
t("sort words.txt nums.txt")
t("sort -o out.txt words.txt && cat out.txt", "mut")
t("sort -d mixed.txt")
t("sort -k3 -t, -r data.csv")
t("sort nonexistent", "err")
# ---- uniq
t("uniq sorted.txt")
t("uniq -c sorted.txt")
t("uniq -d sorted.txt")
t("uniq -u sorted.txt")
t("uniq -D sorted.txt")
t("uniq -i mixed.txt")
t("sort words.txt | uniq -c")
t("uniq -f1 kv.txt")
t("uniq -s1 -w2 sorted.txt")
t("uniq -c -d words.txt")
# ---- cut
t("cut -d, -f1 data.csv")
t("cut -d, -f1,3 data.csv")
t("cut -d, -f2- data.csv")
t("cut -d, -f-2 data.csv")
t("cut -c1-3 a.txt")
t("cut -c2,4,6- a.txt")
t("cut -b1 a.txt")
t("cut -f2 tabs.txt")
t("cut -d' ' -f2 a.txt")
t("cut -d, -f1 -s a.txt data.csv")
t("cut -d, --complement -f2 data.csv")
t("cut -d, -f1,3 --output-delimiter=' | ' data.csv")
t("cut a.txt", "err")
t("cut -f0 a.txt", "err")
t("cut -d ab -f1 a.txt", "err")
t("cut -c3- nonl.txt")
# ---- tr
t("tr a-z A-Z < a.txt")
t("tr '[:lower:]' '[:upper:]' < a.txt")
t("tr -d aeiou < a.txt")
t("tr -s ' l' < a.txt")
t("tr -cd '[:alpha:]\\n' < data.csv")
t("tr -s '\\n' < spaced.txt")
t("tr abc x < words.txt")
t("tr -t abc xy < words.txt")
t("tr ',' '\\t' < data.csv")
t("tr -d '\\n' < a.txt")
t("tr '[:upper:]' '[:lower:]' < mixed.txt")
t("tr -c 'a-z\\n' '_' < a.txt")
t("tr -ds 'l' 'o' < a.txt")
t("tr 'a-c' '[x*]' < words.txt")
t("tr", "err")
t("tr a", "err")
t("tr -d a b", "err")
# ---- mkdir / rmdir / rm / cp / mv / touch
t("mkdir newdir && ls -d newdir", "mut")
t("mkdir -p x/y/z && /usr/bin/find x | /usr/bin/sort", "mut")
t("mkdir -pv p/q", "mut")
t("mkdir -v m1 m2", "mut")
t("mkdir dir", "mut", "err")
t("mkdir -p dir/sub a.txt/x", "mut", "err")
t("mkdir nope/x", "mut", "err")
t("mkdir", "mut", "err")
t("rmdir dir/sub/deep", "mut", "err")
t("mkdir -p e1/e2 && rmdir -p e1/e2 && ls -d e1", "mut", "err")
t("rm a.txt && ls a.txt", "mut", "err")
t("rm -v a.txt nonl.txt", "mut")
t("rm nonexistent", "mut", "err")
t("rm -f nonexistent; echo $?", "mut")
t("rm dir", "mut", "err")
t("rm -r dir && ls -d dir", "mut", "err")
t("rm -rf dir link && ls", "mut")
t("rm -d dir/sub/deep", "mut", "err")
t("mkdir em && rm -dv em", "mut")
t("rm -rv dir/sub/deep", "mut")
t("rm", "mut", "err")
t("rm -f", "mut")
t("rm -r .", "mut", "err")
t("cp a.txt b.txt && cat b.txt", "mut")
t("cp a.txt dir && ls dir", "mut")
t("cp -v a.txt nonl.txt dir", "mut")
t("cp dir x", "mut", "err")
t("cp -r dir x && /usr/bin/find x | /usr/bin/sort", "mut")
t("cp -R dir dir/sub", "mut", "err")
t("cp a.txt a.txt", "mut", "err")
t("cp nonexistent x", "mut", "err")
t("cp a.txt nonl.txt notadir", "mut", "err")
t("cp a.txt", "mut", "err")
t("mkdir d2 && cp -r dir d2 && /usr/bin/find d2 | /usr/bin/sort", "mut")
t("cp -p a.txt p.txt && /usr/bin/stat -c '%Y %a' p.txt", "mut")
t("cp -n a.txt nonl.txt && cat nonl.txt", "mut")
t("cp -rv dir/sub s2", "mut", "sort")
t("cp link l2 && /usr/bin/stat -c %F l2", "mut")
t("cp -r dirlink dl2 && /usr/bin/stat -c %F dl2", "mut")
t("mv a.txt z.txt && ls z.txt a.txt", "mut", "err")
t("mv -v a.txt dir && ls dir", "mut")
t("mv a.txt nonl.txt dir && ls dir", "mut")
t("mv nonexistent x", "mut", "err")
t("mv dir dir/sub", "mut", "err")
t("mv dir newname && ls newname", "mut")
t("mv a.txt dir/sub/deep/x.txt && cat dir/sub/deep/x.txt", "mut")
t("mv a.txt nonl.txt notadir", "mut", "err")
t("mv -n a.txt nonl.txt && cat nonl.txt", "mut")
t("touch new.txt && ls -l new.txt | /usr/bin/cut -c1-10", "mut")
t("touch -d '2020-02-03 04:05:06' a.txt && /usr/bin/stat -c %y a.txt", "mut")
t("touch -t 202001020304.05 a.txt && /usr/bin/stat -c '%Y %X' a.txt", "mut")
t("touch -c nope && ls nope", "mut", "err")
t("touch -r data.csv a.txt && /usr/bin/stat -c %Y a.txt", "mut")
t("touch -m -d '@1000000000' a.txt && /usr/bin/stat -c '%Y' a.txt", "mut")
t("touch nodir/x", "mut", "err")
t("echo hi | tee t1.txt t2.txt && cat t1.txt t2.txt", "mut")
t("echo more | tee -a a.txt > /dev/null && cat a.txt", "mut")
# ---- pwd / env / which / basename / dirname
t("pwd", "nowasm")
t("cd dir && pwd", "nowasm")
t("env -i FOO=bar env")
t("env -i A=1 B=2 env -u A")
t("env -i X=1 env")
t("env -i A=b env -0 | tr '\\0' '|'")
t("which ls cat grep")
t("which nosuchcmd ls")
t("which")
t("basename /a/b/c.txt")
t("basename /a/b/c.txt .txt")
t("basename -a x/y z/w/")
t("basename -s .txt a.txt b.txt")
t("basename /")
t("basename", "err")
t("dirname /a/b/c a/b a /")
t("dirname //x// .")
# ---- seq
t("seq 5")
t("seq 3 7")
t("seq 1 2 10")
t("seq 10 -3 1")
t("seq 1 0.5 3")
t("seq -w 8 11")
t("seq -s, 5")
t("seq 0.1 0.1 0.5")
t("seq -w -1 1")
t("seq 5 1")
t("seq -f '%03g' 3")
t("seq 1 a", "err")
t("seq", "err")
t("seq 1.0 3")
t("seq -s ' ' -w 1 10")
# ---- sleep / true / false / yes
t("sleep 0.1 && echo slept")
t("sleep 0.05s 0.05")
t("sleep 1x", "err")
t("sleep", "err")
t("true; echo $?")
t("false; echo $?")
t("true --help >/dev/null; echo $?")
t("yes | head -n 3")
t("yes abc def | head -n 2")
# ---- test / [
t("test -f a.txt; echo $?")
t("test -d dir && echo dir")
t("test -e nonexistent || echo missing")
t("test -s empty.txt; echo $?")
t("test -s a.txt; echo $?")
t("test -L link && echo link")
t("test -h a.txt; echo $?")
t("test -r a.txt -a -w a.txt; echo $?")
t("test -x exec.sh; echo $?", "nowasm")
t("test -x a.txt; echo $?")
t("test -z ''; echo $?")
t("test -n ''; echo $?")
t("test abc = abc; echo $?")
t("test abc != abc; echo $?")
t("test 3 -lt 10; echo $?")
t("test 10 -le 3; echo $?")
t("test 5 -eq 05; echo $?")
t("test -5 -ne 5 -o 1 -gt 2; echo $?")
t("test ! -f dir; echo $?")
t("test \\( 1 -eq 1 \\) -a \\( 2 -ge 3 \\); echo $?")
t("test abc -eq 1; echo $?", "err")
t("test 1 -eq; echo $?", "err")
t("test; echo $?")
t("test x; echo $?")
t("test a.txt -nt big.txt; echo $?")
t("[ 1 = 1 ]; echo $?")
t("[ 1 = 1; echo $?", "err")
t("[ -d dir -a ! -f dir ]; echo $?")
t("[ ]; echo $?")
t("[ a \\< b ]; echo $?", "err")
# ---- stat
t("stat -c '%n %s %F %a %A %h' a.txt dir empty.txt", "nowasm")
t("stat -c '%n %s %F %A' a.txt dir empty.txt link")
t("stat -c '%Y %y' a.txt")
t("stat -c '%N' link a.txt")
t("stat -L -c '%F %s' link")
t("stat --printf '%n:%s\\n' a.txt nonl.txt")
t("stat nonexistent", "err")
t("stat a.txt | /usr/bin/sed -n '1,2p;7p'", "nowasm")  # wasmtime reports the birth time as ctim
t("stat a.txt | /usr/bin/sed -n '1,2p;6p'")
t("stat -c '%b %B %o %f' a.txt dir", "nowasm")
# ---- find
t("find dir", "sort")
t("find dir -name '*.txt'", "sort")
t("find . -iname '*.TXT'", "sort")
t("find dir -type d", "sort")
t("find dir -type f -name '*.md'", "sort")
t("find . -type l", "sort")
t("find dir -maxdepth 1", "sort")
t("find dir -mindepth 2", "sort")
t("find dir -mindepth 1 -maxdepth 1 -type f", "sort")
t("find dir/ -name sub", "sort")
t("find dir -path '*sub*'", "sort")
t("find . -empty", "sort")
t("find dir -not -name '*.txt'", "sort")
t("find dir -name '*.txt' -o -name '*.md'", "sort")
t("find dir \\( -name one.txt -o -name four.md \\) -print", "sort")
t("find dir -name sub -prune -o -print", "sort")
t("find dir -size +0", "sort")
t("find . -size -1k -type f", "sort")
t("find dir -type f -printf '%f %s %d\\n'", "sort")
t("find dir -name '*.log' -print0 | tr '\\0' '|'")
t("find nonexistent", "err")
t("find dir -foo", "err")
t("find . -maxdepth 1 -name '*.csv' -exec cat {} \\;")
t("find dir -name '*.txt' -exec wc -l {} +", "sort")
t("find dir -newer a.txt", "sort")
t("find dir -mtime +100 -type f", "sort")
t("find . -regex '.*/[a-c].*' -maxdepth 1", "sort")
t("find dir -type f -delete && find dir", "mut", "sort")
t("find . -maxdepth 1 -name 'with*'")
# ---- du
t("du dir", "sort")
t("du -a dir", "sort")
t("du -s dir")
t("du -sh dir big.txt")
t("du -b dir", "sort")
t("du --apparent-size -a dir", "sort")
t("du -c a.txt big.txt")
t("du -d 1 dir", "sort")
t("du nonexistent", "err")
# ---- date
t("date -u -d @0")
t("date -d '@1700000000' '+%Y-%m-%d %H:%M:%S %a %b %j %u %w %Z %z %s'")
t("date -d '2024-02-29 13:45:10' '+%A %B %e %I %p %D %T %F %y %C %U %W %V %G'")
t("date -u -d '2021-01-03' '+%V %G %U %W %j'")
t("date -d '2024-03-10 08:09:10' +%-d/%-m/%_H/%^a/%10Y")
t("date -d @1700000000 -R")
t("date -d @1700000000 -I")
t("date -d @1700000000 -Iseconds")
t("date -d @1700000000 --rfc-3339=seconds")
t("date -d '2024-01-01 +2 days' +%F")
t("date -d '2024-01-31 12:00 UTC' +%s")
t("date -d 'garbage'", "err")
t("date -r a.txt +%Y-%m-%d")
t("date -d @1700000000.5 +%s.%N")
t("date -u +%Y >/dev/null; echo $?")
# ---- misc / multi-call / errors
t("echo 'b\na\nc' | sort | head -n 2")
t("cat data.csv | cut -d, -f3 | sort | uniq -c | sort -rn")
t("seq 20 | grep 1 | wc -l")
t("ls dir | wc -l")
t("head --version | head -n 1 | cut -d' ' -f1")
t("wc --help >/dev/null; echo $?")
t("mkdir --bogus 2>&1; echo $?")
t("rm -q 2>&1; echo $?")
t("cp -Q a b 2>&1; echo $?")
t("sort -Q 2>&1; echo $?")
t("head -Q 2>&1; echo $?")
t("du -Q 2>&1; echo $?")
t("stat -Q 2>&1; echo $?")
t("date -Q 2>&1; echo $?")
t("tail --bogus 2>&1; echo $?")
t("uniq -Q 2>&1; echo $?")
t("cut -Q 2>&1; echo $?")
t("touch -Q 2>&1; echo $?")
t("seq -Q 2>&1; echo $?")
t("ls --al 2>&1; echo $?")
t("ls --s 2>&1; echo $?")
t("wc -l -- -x 2>&1; echo $?")

# ---- more edge cases
t("ls -R")
t("ls -la dir/sub/deep", "lsl")
t("ls -1 -a -r dir")
t("ls -lrt dir", "lsl")
t("ls -d */", "nowasm")
t("ls -d .")
t("ls -l exec.sh | cut -c1-10", "nowasm")
t("grep -r three", "sort")
t("grep -rh three dir", "sort")
t("grep -c three dir/*.txt dir/sub/three.txt")
t("grep -n -v -e a -e e words.txt")
t("grep -E 'fo{1,2}d?' -o words.txt")
t("grep -iE '^H.*(d|n)$' a.txt")
t("grep -e bar -w -c words.txt")
t("sort -t, -k2,2n -k1,1 data.csv")
t("sort -t ' ' -k3 kv.txt")
t("sort -rk2 -t, data.csv")
t("sort -n -k2 -t, -u data.csv")
t("seq -f '%.2f' 1 0.25 2")
t("seq -s '' 5")
t("seq 3 -1 1")
t("seq 1e1 2e1 5e1")
t("tr '\\n' ' ' < a.txt")
t("tr -s 'a-z' < words.txt")
t("tr '0-9' 'a-j' < big.txt | tail -n 2")
t("tr -d '[:space:]' < tabs.txt")
t("cut -c1-4 unicode.txt")
t("cut -d: -f1 /etc/hostname >/dev/null; echo $?", "nowasm")  # outside the sandbox
t("date -d @86399 -u")
t("date -d '2000-01-01' '+%G-W%V-%u'")
t("date -d '1999-12-31 23:59:59' +%s")
t("yes | head -n 1; echo ${PIPESTATUS[0]}", "nowasm")
t("seq 100000 | head -n 1")
t("cat big.txt | head -n 2")
t("find . -maxdepth 1 -type f -name '*.txt' -newer data.csv", "sort")
t("find dir -type f -exec grep -l three {} +", "sort")
t("find dir -name '*.md' -exec cat {} \\;")
t("find . -name 'a*' -maxdepth 1", "err")
t("find dir -printf '%p %y %d\\n'", "sort")
t("find dir -type d -empty")
t("find . -maxdepth 2 -path './dir/*' -type f", "sort")
t("head -n 2 a.txt - < nonl.txt")
t("tail -n 1 - < a.txt")
t("printf '%s\\n' a b | cat -n")
t("printf '%-8s|%8s|\\n' ab cd")
t("printf '%05.1f|%+.2e|%g\\n' 3.14159 -1234.5 0.00001234")
t("printf '%i %d\\n' 0 -0")
t("printf '%.3s|\\n' abcdef")
t("echo -e '1\\n2\\n3' | tail -n 1")
t("echo 'a b  c' | wc -w")
t("wc -c unicode.txt bin.dat")
t("stat -c '%s %n' big.txt empty.txt")
t("du -sb dir")
t("du -h big.txt")
t("basename -z a/b | tr '\\0' '|'")
t("mkdir -m 700 md && stat -c %a md", "mut", "nowasm")
t("cp -r dir/sub dir/one.txt newd 2>&1; echo $?", "mut")
t("mkdir nd && cp -r dir/sub dir/one.txt nd && ls -R nd", "mut")
t("mv dir/one.txt dir/sub && ls dir dir/sub", "mut")
t("rm -r dir/sub && ls dir", "mut")
t("rm -ri dir < /dev/null; echo $?; ls -d dir", "mut")
t("touch a.txt new2.txt && ls new2.txt", "mut")


def fixtures(d):
    def w(name, data, mode=None):
        p = os.path.join(d, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        if mode:
            os.chmod(p, mode)

    w("a.txt", "hello world\nfoo bar\nHello again\n")
    w("nonl.txt", "no newline at end\nsecond line without")
    w("empty.txt", "")
    w("unicode.txt", "héllo wörld\nnaïve café\n日本語 テキスト\n")
    w("tabs.txt", "a\tb\tc\n1\t2\t3\nlong\tfield\there\n")
    w("data.csv", "name,age,city\nalice,30,Paris\nbob,25,Berlin\ncarol,35,London\ndave,25,Paris\n")
    w("words.txt", "foo\nbar\nabab\nbaz\nfoo\ncdcd\nqux\nfood\nbarfoo\nalpha\nabba\nzeta\n")
    w("sorted.txt", "apple\napple\nbanana\ncherry\ncherry\ncherry\ndate\n")
    w("mixed.txt", "banana\nApple\napple\nCherry\n_under\n10 items\nBanana\n")
    w("nums.txt", "10\n2\n-3\n2.5\n100\n0\n-10.5\n007\n2\n1e3\n")
    w("kv.txt", "b 2 x\na 10 y\nc 1 z\na 2 w\n  d 3 v\n")
    w("human.txt", "1K\n2M\n512\n1G\n3K\n-1K\n0\n")
    w("months.txt", "Mar\nJan\nDEC\nfeb\nxyz\nJun\n")
    w("versions.txt", "file10.txt\nfile2.txt\nfile1.txt\nv1.10\nv1.9\nv1.2.3\n")
    w("regex.txt", "a.b\naxb\n.*\nxy\ny\nzy\n]x\na-b\n[x\n")
    w("spaced.txt", "one\n\n\n\ntwo\n\nthree\n")
    w("big.txt", "".join("%d\n" % i for i in range(1, 101)))
    w("bin.dat", b"abc\x00def\nxyz abc\n\x7f\x80\xff\n")
    w("with space.txt", "spaced name\n")
    w("exec.sh", "#!/bin/sh\necho hi\n", 0o755)
    w("dir/one.txt", "one\nthree-ish\n")
    w("dir/two.log", "two\n")
    w("dir/.hidden", "hidden\n")
    w("dir/sub/three.txt", "three\n")
    w("dir/sub/deep/four.md", "four\nthree\n")
    w("dir/sub/deep/empty", "")
    os.symlink("a.txt", os.path.join(d, "link"))
    os.symlink("dir", os.path.join(d, "dirlink"))
    # fixed timestamps (deepest first so directory times stick)
    stamps = {"nums.txt": "2024-03-01 12:00:00", "data.csv": "2023-06-01 08:00:00",
              "dir/two.log": "2024-05-05 05:05:05", "words.txt": "2024-01-15 10:29:00"}
    recent = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 2 * 86400))
    stamps["big.txt"] = recent
    allp = []
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            allp.append(os.path.relpath(os.path.join(root, n), d))
    allp.sort(key=lambda p: -p.count("/"))
    for p in allp + ["."]:
        st = stamps.get(p, OLD)
        subprocess.run(["/usr/bin/touch", "-h", "-d", st + " UTC", os.path.join(d, p)], check=True)


def build(wasm):
    os.makedirs(TARGET, exist_ok=True)
    native = os.path.join(TARGET, "toolbox-native")
    rustc = shutil.which("rustc") or "/usr/bin/rustc"
    r = subprocess.run([rustc, "--edition", "2021", "-O", "src/main.rs", "-o", native], cwd=ROOT)
    if r.returncode != 0:
        sys.exit("native build failed")
    wasm_path = None
    if wasm:
        wasm_path = os.path.join(TARGET, "toolbox.wasm")
        r = subprocess.run(["/usr/bin/rustc", "--edition", "2021", "-O", "-C", "strip=symbols", "-C", "lto",
                            "--target", "wasm32-wasi", "src/main.rs", "-o", wasm_path], cwd=ROOT)
        if r.returncode != 0:
            sys.exit("wasm build failed")
    return native, wasm_path


def make_bin(bindir, native=None, wasm=None):
    os.makedirs(bindir, exist_ok=True)
    for c in COMMANDS:
        p = os.path.join(bindir, c)
        if native:
            os.symlink(native, p)
        else:
            with open(p, "w") as f:
                f.write("#!/bin/sh\nexec %s %s %s %s \"$@\"\n" % (sys.executable, os.path.join(HERE, "wasm_run.py"), wasm, "'%s'" % c))
            os.chmod(p, 0o755)


PRELUDE = "enable -n echo printf test '[' true false pwd; "


def run(cmd, path, cwd, extra_env=None):
    env = {"LC_ALL": "C", "TZ": "UTC", "PATH": path, "HOME": "/root", "PWD": cwd}
    if extra_env:
        env.update(extra_env)
    try:
        p = subprocess.run(["/bin/bash", "-c", PRELUDE + cmd], cwd=cwd, env=env, capture_output=True, timeout=60)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return -1, b"", b"TIMEOUT"


def normalise(out, flags):
    if "lsl" in flags:
        out = out.replace(b" root root ", b" user user ").replace(b" root ", b" user ")
    if "sort" in flags:
        out = b"\n".join(sorted(out.split(b"\n")))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wasm", action="store_true", help="also run the wasm build")
    ap.add_argument("--wasm-only", action="store_true")
    ap.add_argument("-k", default=None)
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    want_wasm = a.wasm or a.wasm_only
    if want_wasm and not os.path.exists("/usr/bin/rustc"):
        print("wasm: /usr/bin/rustc (Debian rustc + libstd-rust-dev-wasm32) missing; skipping wasm")
        want_wasm = False
    native, wasm = build(want_wasm)
    tmp = tempfile.mkdtemp(prefix="toolbox-diff-")
    try:
        fix = os.path.join(tmp, "fixture")
        os.makedirs(fix)
        fixtures(fix)
        make_bin(os.path.join(tmp, "nbin"), native=native)
        modes = []
        if not a.wasm_only:
            modes.append(("native", os.path.join(tmp, "nbin"), {}))
        if want_wasm:
            make_bin(os.path.join(tmp, "wbin"), wasm=wasm)
            modes.append(("wasm", os.path.join(tmp, "wbin"), {"TOOLBOX_WASM_CACHE": os.path.join(tmp, "toolbox.cwasm")}))
        cases = [(c, f) for c, f in T if a.k is None or a.k in c]
        total_failed = 0
        total_passed = 0
        for mode, bindir, extra in modes:
            passed = failed = skipped = err_same = 0
            strict_err_fail = 0
            for i, (cmd, flags) in enumerate(cases):
                if mode == "wasm" and "nowasm" in flags:
                    skipped += 1
                    continue
                results = []
                for which, path in (("gnu", "/usr/bin:/bin"), ("toolbox", bindir + ":/usr/bin:/bin")):
                    if "mut" in flags:
                        cwd = os.path.join(tmp, "work-%s" % which)
                        if os.path.exists(cwd):
                            shutil.rmtree(cwd)
                        shutil.copytree(fix, cwd, symlinks=True)
                        subprocess.run(["/usr/bin/touch", "-h", "-d", OLD + " UTC", cwd])
                    else:
                        cwd = fix
                    results.append(run(cmd, path, cwd, extra if which == "toolbox" else None))
                (grc, gout, gerr), (trc, tout, terr) = results
                gout, tout = normalise(gout, flags), normalise(tout, flags)
                gerr_n = gerr.replace(b"/usr/bin/", b"")
                ok = grc == trc and gout == tout
                same_err = gerr_n == terr
                if ok and "err" in flags and not same_err:
                    ok = False
                    strict_err_fail += 1
                if ok:
                    passed += 1
                    if same_err:
                        err_same += 1
                    elif a.v:
                        print("NOTE [%s] stderr differs: %s\n  gnu: %r\n  toolbox: %r" % (mode, cmd, gerr_n[:300], terr[:300]))
                else:
                    failed += 1
                    print("FAIL [%s] %s" % (mode, cmd))
                    if a.v:
                        print("  status gnu=%s toolbox=%s" % (grc, trc))
                        for line in difflib.unified_diff(gout.decode("utf-8", "replace").splitlines(), tout.decode("utf-8", "replace").splitlines(), "gnu", "toolbox", lineterm="", n=1):
                            print("   ", line)
                        if gerr_n != terr:
                            print("  stderr gnu: %r" % gerr_n[:400])
                            print("  stderr toolbox: %r" % terr[:400])
            total_failed += failed
            total_passed += passed
            print("%s: %d cases, %d passed, %d failed, %d skipped; stderr identical in %d of the passed (%d 'err' cases failed on stderr)" % (
                mode, len(cases), passed, failed, skipped, err_same, strict_err_fail))
        print("%d passed, %d failed" % (total_passed, total_failed))
        return 1 if total_failed else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
