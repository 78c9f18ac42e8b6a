//! mkdir, rmdir, rm, cp, mv, touch.

use crate::sys::{self, Kind};
use crate::util::*;
use std::io::Write;

fn umask_mode(m: u32) -> u32 {
    m & !0o022
}

// ---------------------------------------------------------------- mkdir / rmdir

fn parse_mode(s: &str, base: u32) -> Option<u32> {
    if !s.is_empty() && s.chars().all(|c| ('0'..='7').contains(&c)) {
        return u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777);
    }
    // symbolic: [ugoa]*[+-=][rwxXst]*  (comma separated)
    let mut mode = base;
    for clause in s.split(',') {
        let b = clause.as_bytes();
        let mut i = 0;
        let mut who = 0u32;
        while i < b.len() && b"ugoa".contains(&b[i]) {
            who |= match b[i] {
                b'u' => 0o4700,
                b'g' => 0o2070,
                b'o' => 0o1007,
                _ => 0o7777,
            };
            i += 1;
        }
        let who_given = who != 0;
        if !who_given {
            who = 0o7777;
        }
        if i >= b.len() {
            return None;
        }
        while i < b.len() {
            let op = b[i];
            if !b"+-=".contains(&op) {
                return None;
            }
            i += 1;
            let mut bits = 0u32;
            while i < b.len() && b"rwxXst".contains(&b[i]) {
                bits |= match b[i] {
                    b'r' => 0o444,
                    b'w' => 0o222,
                    b'x' | b'X' => 0o111,
                    b's' => 0o6000,
                    _ => 0o1000,
                };
                i += 1;
            }
            let eff = if who_given { bits & who } else { bits & !0o022 };
            match op {
                b'+' => mode |= eff,
                b'-' => mode &= !eff,
                _ => {
                    mode &= !(who & 0o7777);
                    mode |= eff;
                }
            }
        }
    }
    Some(mode)
}

pub fn mkdir(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "m:pvZ",
        long: &[l("mode", Has::Req, 'm'), l("parents", Has::No, 'p'), l("verbose", Has::No, 'v'), l("context", Has::Opt, 'Z')],
        code: 1,
        help: "Usage: mkdir [OPTION]... DIRECTORY...\nCreate the DIRECTORY(ies), if they do not already exist.\n\n  -m, --mode=MODE   set file mode (as in chmod), not a=rwx - umask\n  -p, --parents     no error if existing, make parent directories as needed\n  -v, --verbose     print a message for each created directory\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let parents = p.has('p');
    let verbose = p.has('v');
    let mut mode: Option<u32> = None;
    for (c, a) in &p.opts {
        if *c == 'm' {
            let s = a.clone().unwrap();
            match parse_mode(&s, 0o777) {
                Some(m) => mode = Some(m),
                None => die(1, &format!("invalid mode {}", qa(&s))),
            }
        }
    }
    if p.args.is_empty() {
        usage_error(1, "missing operand");
    }
    let mut status = 0;
    for d in &p.args {
        if parents {
            // create each missing component
            let mut prefix = String::new();
            let comps: Vec<&str> = d.split('/').collect();
            let mut failed = false;
            for (i, c) in comps.iter().enumerate() {
                if i > 0 {
                    prefix.push('/');
                }
                prefix.push_str(c);
                if c.is_empty() || *c == "." || *c == ".." {
                    continue;
                }
                match sys::stat_s(&prefix) {
                    Ok(m) if m.is_dir() => continue,
                    Ok(_) => {
                        let last = i == comps.len() - 1 || comps[i + 1..].iter().all(|x| x.is_empty());
                        let e = if last { mkerr(Errno::Exist) } else { mkerr(Errno::NotDir) };
                        let e = if last { e } else { e };
                        err(&format!("cannot create directory {}: {}", qa(&prefix), ioerr(&e)));
                        failed = true;
                        break;
                    }
                    Err(_) => {}
                }
                match std::fs::create_dir(&prefix) {
                    Ok(()) => {
                        let last = comps[i + 1..].iter().all(|x| x.is_empty());
                        if last {
                            if let Some(m) = mode {
                                let _ = sys::set_perm(&prefix, m);
                            }
                        }
                        if verbose {
                            outf!("mkdir: created directory {}\n", qa(&prefix));
                        }
                    }
                    Err(e) => {
                        if errno(&e) == Errno::Exist && sys::stat_s(&prefix).map(|m| m.is_dir()).unwrap_or(false) {
                            continue;
                        }
                        err(&format!("cannot create directory {}: {}", qa(d), ioerr(&e)));
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                status = 1;
            }
        } else {
            match std::fs::create_dir(d) {
                Ok(()) => {
                    if let Some(m) = mode {
                        let _ = sys::set_perm(d, m);
                    }
                    if verbose {
                        outf!("mkdir: created directory {}\n", qa(d));
                    }
                }
                Err(e) => {
                    err(&format!("cannot create directory {}: {}", qa(d), ioerr(&e)));
                    status = 1;
                }
            }
        }
    }
    status
}

pub fn rmdir(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "pv",
        long: &[l("parents", Has::No, 'p'), l("verbose", Has::No, 'v'), l("ignore-fail-on-non-empty", Has::No, 'i')],
        code: 1,
        help: "Usage: rmdir [OPTION]... DIRECTORY...\nRemove the DIRECTORY(ies), if they are empty.\n\n      --ignore-fail-on-non-empty  ignore each failure to remove a non-empty directory\n  -p, --parents   remove DIRECTORY and its ancestors\n  -v, --verbose   output a diagnostic for every directory processed\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    if p.args.is_empty() {
        usage_error(1, "missing operand");
    }
    let ignore = p.has('i');
    let mut status = 0;
    for d in &p.args {
        let mut cur = d.trim_end_matches('/').to_string();
        if cur.is_empty() {
            cur = d.clone();
        }
        loop {
            if p.has('v') {
                outf!("rmdir: removing directory, {}\n", qa(&cur));
            }
            if let Err(e) = std::fs::remove_dir(&cur) {
                if !(ignore && errno(&e) == Errno::NotEmpty) {
                    err(&format!("failed to remove {}: {}", qa(&cur), ioerr(&e)));
                    status = 1;
                }
                break;
            }
            if !p.has('p') {
                break;
            }
            match cur.rfind('/') {
                Some(i) if i > 0 => {
                    cur.truncate(i);
                    cur = cur.trim_end_matches('/').to_string();
                    if cur.is_empty() {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    status
}

// ---------------------------------------------------------------- rm

struct RmOpts {
    force: bool,
    recursive: bool,
    dir: bool,
    verbose: bool,
    interactive: bool,
}

fn ask(prompt: &str) -> bool {
    out_flush();
    let stderr = std::io::stderr();
    let _ = write!(stderr.lock(), "{}: {}", prog(), prompt);
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    line.starts_with('y') || line.starts_with('Y')
}

fn rm_path(path: &str, o: &RmOpts) -> bool {
    let m = match sys::lstat_s(path) {
        Ok(m) => m,
        Err(e) => {
            if o.force && errno(&e) == Errno::NoEnt {
                return true;
            }
            err(&format!("cannot remove {}: {}", qa(path), ioerr(&e)));
            return false;
        }
    };
    if m.is_dir() {
        if !o.recursive {
            if o.dir {
                if o.interactive && !ask(&format!("remove directory {}? ", qa(path))) {
                    return true;
                }
                return match std::fs::remove_dir(path) {
                    Ok(()) => {
                        if o.verbose {
                            outf!("removed directory {}\n", qa(path));
                        }
                        true
                    }
                    Err(e) => {
                        err(&format!("cannot remove {}: {}", qa(path), ioerr(&e)));
                        false
                    }
                };
            }
            err(&format!("cannot remove {}: Is a directory", qa(path)));
            return false;
        }
        if o.interactive && !ask(&format!("descend into directory {}? ", qa(path))) {
            return true;
        }
        let mut ok = true;
        match sys::dir_names(path) {
            Ok(mut names) => {
                names.sort();
                for n in names {
                    if !rm_path(&join(path, &n), o) {
                        ok = false;
                    }
                }
            }
            Err(e) => {
                err(&format!("cannot remove {}: {}", qa(path), ioerr(&e)));
                return false;
            }
        }
        if !ok {
            return false;
        }
        if o.interactive && !ask(&format!("remove directory {}? ", qa(path))) {
            return true;
        }
        match std::fs::remove_dir(path) {
            Ok(()) => {
                if o.verbose {
                    outf!("removed directory {}\n", qa(path));
                }
                true
            }
            Err(e) => {
                err(&format!("cannot remove {}: {}", qa(path), ioerr(&e)));
                false
            }
        }
    } else {
        if o.interactive {
            let what = match m.kind {
                Kind::Symlink => "symbolic link",
                Kind::File if m.size == 0 => "regular empty file",
                Kind::File => "regular file",
                _ => "file",
            };
            if !ask(&format!("remove {} {}? ", what, qa(path))) {
                return true;
            }
        }
        match std::fs::remove_file(path) {
            Ok(()) => {
                if o.verbose {
                    outf!("removed {}\n", qa(path));
                }
                true
            }
            Err(e) => {
                err(&format!("cannot remove {}: {}", qa(path), ioerr(&e)));
                false
            }
        }
    }
}

pub fn rm(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "dfiIrRv",
        long: &[
            l("dir", Has::No, 'd'),
            l("force", Has::No, 'f'),
            l("interactive", Has::Opt, 'n'),
            l("recursive", Has::No, 'r'),
            l("verbose", Has::No, 'v'),
            l("preserve-root", Has::Opt, 'P'),
            l("no-preserve-root", Has::No, 'N'),
            l("one-file-system", Has::No, 'o'),
        ],
        code: 1,
        help: "Usage: rm [OPTION]... [FILE]...\nRemove (unlink) the FILE(s).\n\n  -f, --force           ignore nonexistent files and arguments, never prompt\n  -i                    prompt before every removal\n  -r, -R, --recursive   remove directories and their contents recursively\n  -d, --dir             remove empty directories\n  -v, --verbose         explain what is being done\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let mut o = RmOpts { force: false, recursive: false, dir: false, verbose: false, interactive: false };
    let mut preserve_root = true;
    for (c, a) in &p.opts {
        match c {
            'f' => {
                o.force = true;
                o.interactive = false
            }
            'i' => {
                o.interactive = true;
                o.force = false
            }
            'n' => {
                let w = a.clone().unwrap_or_else(|| "always".into());
                o.interactive = w == "always" || w == "yes";
                if o.interactive {
                    o.force = false;
                }
            }
            'r' | 'R' => o.recursive = true,
            'd' => o.dir = true,
            'v' => o.verbose = true,
            'N' => preserve_root = false,
            _ => {}
        }
    }
    if p.args.is_empty() {
        if o.force {
            return 0;
        }
        usage_error(1, "missing operand");
    }
    let mut status = 0;
    for a in &p.args {
        let base = basename_of(a);
        if base == "." || base == ".." {
            err(&format!("refusing to remove '.' or '..' directory: skipping {}", qa(a)));
            status = 1;
            continue;
        }
        if o.recursive && preserve_root && a.trim_end_matches('/').is_empty() && a.starts_with('/') {
            err("it is dangerous to operate recursively on '/'");
            err("use --no-preserve-root to override this failsafe");
            status = 1;
            continue;
        }
        if !rm_path(a, &o) {
            status = 1;
        }
    }
    status
}

// ---------------------------------------------------------------- cp

struct CpOpts {
    recursive: bool,
    force: bool,
    verbose: bool,
    no_clobber: bool,
    preserve: bool,
    deref: bool, // follow symlinks in source
    update: bool,
    interactive: bool,
}

fn copy_file_contents(src: &str, dst: &str, force: bool) -> std::io::Result<()> {
    let mut r = std::fs::File::open(src)?;
    let w = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(dst);
    let mut w = match w {
        Ok(w) => w,
        Err(e) => {
            if force && errno(&e) != Errno::NoEnt {
                std::fs::remove_file(dst)?;
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(dst)?
            } else {
                return Err(e);
            }
        }
    };
    std::io::copy(&mut r, &mut w)?;
    Ok(())
}

fn same_file(a: &sys::Meta, b: &sys::Meta) -> bool {
    a.ino != 0 && a.ino == b.ino && a.dev == b.dev
}

fn cp_one(src: &str, dst: &str, o: &CpOpts, top: bool) -> bool {
    let sm = if o.deref || (top && !o.recursive) { sys::stat_s(src) } else { sys::lstat_s(src) };
    let sm = match sm {
        Ok(m) => m,
        Err(e) => {
            err(&format!("cannot stat {}: {}", qa(src), ioerr(&e)));
            return false;
        }
    };
    let dm = sys::lstat_s(dst).ok();
    if let Some(d) = &dm {
        let dfollow = sys::stat_s(dst).ok();
        if same_file(&sm, d) || dfollow.as_ref().map(|x| same_file(&sm, x) && sm.kind != Kind::Symlink).unwrap_or(false) {
            err(&format!("{} and {} are the same file", qa(src), qa(dst)));
            return false;
        }
    }
    if sm.is_dir() {
        if !o.recursive {
            err(&format!("-r not specified; omitting directory {}", qa(src)));
            return false;
        }
        if let Some(d) = &dm {
            if !d.is_dir() && !(d.is_symlink() && sys::stat_s(dst).map(|m| m.is_dir()).unwrap_or(false)) {
                err(&format!("cannot overwrite non-directory {} with directory {}", qa(dst), qa(src)));
                return false;
            }
        } else {
            if let Err(e) = std::fs::create_dir(dst) {
                err(&format!("cannot create directory {}: {}", qa(dst), ioerr(&e)));
                return false;
            }
            let _ = sys::set_perm(dst, if o.preserve { sm.perm } else { umask_mode(sm.perm) });
            if o.verbose {
                outf!("{} -> {}\n", qa(src), qa(dst));
            }
        }
        let mut ok = true;
        match sys::dir_names(src) {
            Ok(mut names) => {
                names.sort();
                for n in names {
                    if !cp_one(&join(src, &n), &join(dst, &n), o, false) {
                        ok = false;
                    }
                }
            }
            Err(e) => {
                err(&format!("cannot access {}: {}", qa(src), ioerr(&e)));
                ok = false;
            }
        }
        if o.preserve {
            let _ = sys::set_times(dst, sm.atime, sm.mtime);
        }
        return ok;
    }
    if let Some(d) = &dm {
        if d.is_dir() {
            err(&format!("cannot overwrite directory {} with non-directory", qa(dst)));
            return false;
        }
        if o.no_clobber {
            return true;
        }
        if o.update && d.mtime >= sm.mtime {
            return true;
        }
        if o.interactive && !ask(&format!("overwrite {}? ", qa(dst))) {
            return true;
        }
    }
    if sm.kind == Kind::Symlink {
        let target = match std::fs::read_link(src) {
            Ok(t) => t.to_string_lossy().into_owned(),
            Err(e) => {
                err(&format!("cannot read symbolic link {}: {}", qa(src), ioerr(&e)));
                return false;
            }
        };
        if dm.is_some() {
            let _ = std::fs::remove_file(dst);
        }
        if let Err(e) = sys::make_symlink(&target, dst) {
            err(&format!("cannot create symbolic link {}: {}", qa(dst), ioerr(&e)));
            return false;
        }
    } else {
        if let Err(e) = copy_file_contents(src, dst, o.force) {
            if dm.is_none() || errno(&e) != Errno::NoEnt {
                let msg = match std::fs::File::open(src) {
                    Err(e2) => format!("cannot open {} for reading: {}", qa(src), ioerr(&e2)),
                    Ok(_) => format!("cannot create regular file {}: {}", qa(dst), ioerr(&e)),
                };
                err(&msg);
            } else {
                err(&format!("cannot create regular file {}: {}", qa(dst), ioerr(&e)));
            }
            return false;
        }
        if dm.is_none() {
            let _ = sys::set_perm(dst, if o.preserve { sm.perm } else { umask_mode(sm.perm) });
        } else if o.preserve {
            let _ = sys::set_perm(dst, sm.perm);
        }
        if o.preserve {
            let _ = sys::set_times(dst, sm.atime, sm.mtime);
        }
    }
    if o.verbose {
        outf!("{} -> {}\n", qa(src), qa(dst));
    }
    true
}

/// Lexically absolute, normalised form of a path (WASI has no realpath).
fn absolute(p: &str) -> String {
    let base = if p.starts_with('/') { String::new() } else { std::env::current_dir().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default() };
    let mut parts: Vec<&str> = Vec::new();
    let joined = format!("{}/{}", base, p);
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Is `inner` equal to or below `outer`? Walks up from `inner`'s parent comparing
/// device/inode numbers with `outer` (works without realpath, follows symlinked dirs).
fn is_within(outer: &str, inner: &str) -> bool {
    let om = match sys::stat_s(outer) {
        Ok(m) => m,
        Err(_) => return false,
    };
    let mut p = absolute(inner);
    loop {
        if let Ok(m) = sys::stat_s(&p) {
            if same_file(&om, &m) {
                return true;
            }
        }
        if p == "/" {
            return false;
        }
        p = crate::simple::dirname_of(&p);
    }
}

pub fn cp(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "adfHiLnPprRTt:uv",
        long: &[
            l("archive", Has::No, 'a'),
            l("force", Has::No, 'f'),
            l("interactive", Has::No, 'i'),
            l("dereference", Has::No, 'L'),
            l("no-clobber", Has::No, 'n'),
            l("no-dereference", Has::No, 'P'),
            l("preserve", Has::Opt, 'e'),
            l("no-preserve", Has::Req, 'E'),
            l("recursive", Has::No, 'r'),
            l("no-target-directory", Has::No, 'T'),
            l("target-directory", Has::Req, 't'),
            l("update", Has::Opt, 'u'),
            l("verbose", Has::No, 'v'),
        ],
        code: 1,
        help: "Usage: cp [OPTION]... [-T] SOURCE DEST\n  or:  cp [OPTION]... SOURCE... DIRECTORY\n  or:  cp [OPTION]... -t DIRECTORY SOURCE...\nCopy SOURCE to DEST, or multiple SOURCE(s) to DIRECTORY.\n\n  -a, --archive                same as -dR --preserve=all\n  -f, --force                  if an existing destination file cannot be\n                                 opened, remove it and try again\n  -i, --interactive            prompt before overwrite\n  -L, --dereference            always follow symbolic links in SOURCE\n  -n, --no-clobber             do not overwrite an existing file\n  -P, --no-dereference         never follow symbolic links in SOURCE\n  -p                           preserve mode and timestamps\n  -R, -r, --recursive          copy directories recursively\n  -t, --target-directory=DIRECTORY  copy all SOURCE arguments into DIRECTORY\n  -T, --no-target-directory    treat DEST as a normal file\n  -u, --update                 copy only when the SOURCE file is newer\n  -v, --verbose                explain what is being done\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let mut o = CpOpts { recursive: false, force: false, verbose: false, no_clobber: false, preserve: false, deref: false, update: false, interactive: false };
    let mut target: Option<String> = None;
    let mut no_target = false;
    for (c, a) in &p.opts {
        match c {
            'a' => {
                o.recursive = true;
                o.preserve = true;
                o.deref = false
            }
            'd' | 'P' => o.deref = false,
            'L' | 'H' => o.deref = true,
            'f' => o.force = true,
            'i' => {
                o.interactive = true;
                o.no_clobber = false
            }
            'n' => o.no_clobber = true,
            'p' | 'e' => o.preserve = true,
            'r' | 'R' => o.recursive = true,
            't' => target = a.clone(),
            'T' => no_target = true,
            'u' => o.update = true,
            'v' => o.verbose = true,
            _ => {}
        }
    }
    let mut ops = p.args.clone();
    if ops.is_empty() {
        usage_error(1, "missing file operand");
    }
    let dest = match target {
        Some(t) => t,
        None => {
            if ops.len() == 1 {
                usage_error(1, &format!("missing destination file operand after {}", qa(&ops[0])));
            }
            ops.pop().unwrap()
        }
    };
    let dest_is_dir = !no_target && sys::stat_s(&dest).map(|m| m.is_dir()).unwrap_or(false);
    if ops.len() > 1 && !dest_is_dir {
        if no_target {
            usage_error(1, &format!("extra operand {}", qa(&ops[1])));
        }
        match sys::stat_s(&dest) {
            Err(e) => die(1, &format!("target {}: {}", qa(&dest), ioerr(&e))),
            Ok(_) => die(1, &format!("target {} is not a directory", qa(&dest))),
        }
    }
    let mut status = 0;
    for s in &ops {
        let d = if dest_is_dir { join(&dest, basename_of(s)) } else { dest.clone() };
        if o.recursive && sys::stat_s(s).map(|m| m.is_dir()).unwrap_or(false) && is_within(s, &d) {
            err(&format!("cannot copy a directory, {}, into itself, {}", qa(s), qa(&d)));
            status = 1;
            continue;
        }
        if !cp_one(s, &d, &o, true) {
            status = 1;
        }
    }
    status
}

// ---------------------------------------------------------------- mv

pub fn mv(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "fint:Tuv",
        long: &[
            l("force", Has::No, 'f'),
            l("interactive", Has::No, 'i'),
            l("no-clobber", Has::No, 'n'),
            l("target-directory", Has::Req, 't'),
            l("no-target-directory", Has::No, 'T'),
            l("update", Has::Opt, 'u'),
            l("verbose", Has::No, 'v'),
        ],
        code: 1,
        help: "Usage: mv [OPTION]... [-T] SOURCE DEST\n  or:  mv [OPTION]... SOURCE... DIRECTORY\n  or:  mv [OPTION]... -t DIRECTORY SOURCE...\nRename SOURCE to DEST, or move SOURCE(s) to DIRECTORY.\n\n  -f, --force                  do not prompt before overwriting\n  -i, --interactive            prompt before overwrite\n  -n, --no-clobber             do not overwrite an existing file\n  -t, --target-directory=DIRECTORY  move all SOURCE arguments into DIRECTORY\n  -T, --no-target-directory    treat DEST as a normal file\n  -u, --update                 move only when the SOURCE file is newer\n  -v, --verbose                explain what is being done\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let (mut no_clobber, mut verbose, mut update, mut interactive) = (false, false, false, false);
    let mut target: Option<String> = None;
    let mut no_target = false;
    for (c, a) in &p.opts {
        match c {
            'f' => {
                no_clobber = false;
                interactive = false
            }
            'i' => {
                interactive = true;
                no_clobber = false
            }
            'n' => {
                no_clobber = true;
                interactive = false
            }
            't' => target = a.clone(),
            'T' => no_target = true,
            'u' => update = true,
            'v' => verbose = true,
            _ => {}
        }
    }
    let mut ops = p.args.clone();
    if ops.is_empty() {
        usage_error(1, "missing file operand");
    }
    let dest = match target {
        Some(t) => t,
        None => {
            if ops.len() == 1 {
                usage_error(1, &format!("missing destination file operand after {}", qa(&ops[0])));
            }
            ops.pop().unwrap()
        }
    };
    let dest_is_dir = !no_target && sys::stat_s(&dest).map(|m| m.is_dir()).unwrap_or(false);
    if ops.len() > 1 && !dest_is_dir {
        if no_target {
            usage_error(1, &format!("extra operand {}", qa(&ops[1])));
        }
        match sys::stat_s(&dest) {
            Err(e) => die(1, &format!("target {}: {}", qa(&dest), ioerr(&e))),
            Ok(_) => die(1, &format!("target {} is not a directory", qa(&dest))),
        }
    }
    let mut status = 0;
    for s in &ops {
        let d = if dest_is_dir { join(&dest, basename_of(s)) } else { dest.clone() };
        let sm = match sys::lstat_s(s) {
            Ok(m) => m,
            Err(e) => {
                err(&format!("cannot stat {}: {}", qa(s), ioerr(&e)));
                status = 1;
                continue;
            }
        };
        let dm = sys::lstat_s(&d).ok();
        if let Some(dmeta) = &dm {
            if same_file(&sm, dmeta) {
                err(&format!("{} and {} are the same file", qa(s), qa(&d)));
                status = 1;
                continue;
            }
            if no_clobber {
                continue;
            }
            if update && dmeta.mtime >= sm.mtime {
                continue;
            }
            if interactive && !ask(&format!("overwrite {}? ", qa(&d))) {
                continue;
            }
            if dmeta.is_dir() && !sm.is_dir() {
                err(&format!("cannot overwrite directory {} with non-directory", qa(&d)));
                status = 1;
                continue;
            }
            if !dmeta.is_dir() && sm.is_dir() {
                err(&format!("cannot overwrite non-directory {} with directory {}", qa(&d), qa(s)));
                status = 1;
                continue;
            }
        }
        if sm.is_dir() && is_within(s, &d) {
            err(&format!("cannot move {} to a subdirectory of itself, {}", qa(s), qa(&d)));
            status = 1;
            continue;
        }
        match std::fs::rename(s, &d) {
            Ok(()) => {}
            Err(e) if errno(&e) == Errno::XDev => {
                // copy then remove
                let o = CpOpts { recursive: true, force: true, verbose: false, no_clobber: false, preserve: true, deref: false, update: false, interactive: false };
                if dm.as_ref().map(|m| m.is_dir()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(&d);
                }
                if !cp_one(s, &d, &o, false) {
                    status = 1;
                    continue;
                }
                let ro = RmOpts { force: true, recursive: true, dir: true, verbose: false, interactive: false };
                if !rm_path(s, &ro) {
                    status = 1;
                    continue;
                }
            }
            Err(e) => {
                if errno(&e) == Errno::NotEmpty || errno(&e) == Errno::Exist {
                    err(&format!("cannot move {} to {}: Directory not empty", qa(s), qa(&d)));
                } else {
                    err(&format!("cannot move {} to {}: {}", qa(s), qa(&d), ioerr(&e)));
                }
                status = 1;
                continue;
            }
        }
        if verbose {
            outf!("renamed {} -> {}\n", qa(s), qa(&d));
        }
    }
    status
}

// ---------------------------------------------------------------- touch

fn parse_touch_stamp(s: &str) -> Option<(i64, u32)> {
    // [[CC]YY]MMDDhhmm[.ss]
    let (main, secs) = match s.find('.') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if !main.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let now = crate::datefmt::tm_from_epoch(sys::now().0, 0);
    let (year, rest) = match main.len() {
        8 => (now.year, main),
        10 => {
            let yy: i64 = main[..2].parse().ok()?;
            (if yy < 69 { 2000 + yy } else { 1900 + yy }, &main[2..])
        }
        12 => (main[..4].parse().ok()?, &main[4..]),
        _ => return None,
    };
    let mon: u32 = rest[0..2].parse().ok()?;
    let day: u32 = rest[2..4].parse().ok()?;
    let h: u32 = rest[4..6].parse().ok()?;
    let m: u32 = rest[6..8].parse().ok()?;
    let sec: u32 = match secs {
        Some(x) if x.len() == 2 && x.chars().all(|c| c.is_ascii_digit()) => x.parse().ok()?,
        Some(_) => return None,
        None => 0,
    };
    if !(1..=12).contains(&mon) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = crate::datefmt::days_from_civil(year, mon, day);
    Some((days * 86400 + (h * 3600 + m * 60 + sec) as i64, 0))
}

pub fn touch(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "acd:fhmr:t:",
        long: &[
            l("no-create", Has::No, 'c'),
            l("date", Has::Req, 'd'),
            l("no-dereference", Has::No, 'h'),
            l("reference", Has::Req, 'r'),
            l("time", Has::Req, 'T'),
        ],
        code: 1,
        help: "Usage: touch [OPTION]... FILE...\nUpdate the access and modification times of each FILE to the current time.\nA FILE argument that does not exist is created empty, unless -c is supplied.\n\n  -a                     change only the access time\n  -c, --no-create        do not create any files\n  -d, --date=STRING      parse STRING and use it instead of current time\n  -m                     change only the modification time\n  -r, --reference=FILE   use this file's times instead of current time\n  -t STAMP               use [[CC]YY]MMDDhhmm[.ss] instead of current time\n      --time=WORD        change the specified time: access, atime, use,\n                           modify, mtime\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let now = sys::now();
    let (mut only_a, mut only_m, mut no_create) = (false, false, false);
    let mut t_a: (i64, u32) = now;
    let mut t_m: (i64, u32) = now;
    for (c, a) in &p.opts {
        match c {
            'a' => only_a = true,
            'm' => only_m = true,
            'c' => no_create = true,
            'h' => die(1, "--no-dereference is not supported"),
            'd' => {
                let s = a.clone().unwrap();
                match crate::datefmt::parse_date(&s, now) {
                    Some(t) => {
                        t_a = t;
                        t_m = t
                    }
                    None => die(1, &format!("invalid date format {}", qa(&s))),
                }
            }
            't' => {
                let s = a.clone().unwrap();
                match parse_touch_stamp(&s) {
                    Some(t) => {
                        t_a = t;
                        t_m = t
                    }
                    None => die(1, &format!("invalid date format {}", qa(&s))),
                }
            }
            'r' => {
                let f = a.clone().unwrap();
                match sys::stat_s(&f) {
                    Ok(m) => {
                        t_a = m.atime;
                        t_m = m.mtime
                    }
                    Err(e) => die(1, &format!("failed to get attributes of {}: {}", qa(&f), ioerr(&e))),
                }
            }
            'T' => {
                let w = a.clone().unwrap();
                match w.as_str() {
                    "access" | "atime" | "use" => only_a = true,
                    "modify" | "mtime" => only_m = true,
                    _ => usage_error(1, &format!("invalid argument {} for '--time'", qa(&w))),
                }
            }
            _ => {}
        }
    }
    if p.args.is_empty() {
        usage_error(1, "missing file operand");
    }
    if only_a && only_m {
        only_a = false;
        only_m = false;
    }
    let mut status = 0;
    for f in &p.args {
        if f == "-" {
            continue;
        }
        let existing = sys::stat_s(f).ok();
        if existing.is_none() {
            if no_create {
                continue;
            }
            if let Err(e) = std::fs::OpenOptions::new().write(true).create(true).open(f) {
                err(&format!("cannot touch {}: {}", qa(f), ioerr(&e)));
                status = 1;
                continue;
            }
        }
        let cur = existing.clone().or_else(|| sys::stat_s(f).ok());
        let (a, m) = match &cur {
            Some(c) => (if only_m { c.atime } else { t_a }, if only_a { c.mtime } else { t_m }),
            None => (t_a, t_m),
        };
        if let Err(e) = sys::set_times(f, a, m) {
            err(&format!("setting times of {}: {}", qa(f), ioerr(&e)));
            status = 1;
        }
    }
    status
}
