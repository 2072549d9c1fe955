//! The man pages and shell completions, generated from the clap definitions
//! of [`Args`](super::Args) so they never disagree with `--help`: the hidden
//! flags `--generate-man DIR` and `--generate-completions DIR` write them (the
//! Debian package build, `scripts/package-deb`, runs both).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Args;

/// What the page says beyond the flags: files, signals, systemd, where the
/// configuration keys are documented (roff).
const MORE_SECTIONS: &str = r#".SH CONFIGURATION
Every key of the TOML file given with \fB\-\-config\fR is documented, with its
default, in \fI/usr/share/doc/net\-receiver/config.md\fR (\fIdocs/config.md\fR in
the source). Flags override the file.
.SH FILES
.TP
\fI/etc/net\-receiver/net\-receiver.toml\fR
The packaged configuration (commented); the systemd unit starts the receiver with it.
.TP
\fI/var/lib/net\-receiver\fR
The working directory of the packaged service: Maildir \fImail\fR, spool, kept certificate.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting; idle sessions get 421 4.3.2; messages in progress may finish
within \fBshutdown_grace\fR; exit 0.
.TP
\fBSIGHUP\fR
Re\-read the TLS certificate and key and the password store; reopen \fBjson_file\fR.
.SH SYSTEMD
Sockets passed by socket activation (\fBLISTEN_FDS\fR) are served instead of the
configured listeners; a socket named (\fBFileDescriptorName=\fR) smtp, smtps or
submission serves that mode. With \fBNOTIFY_SOCKET\fR set, the receiver sends
READY=1 once listening, STOPPING=1 on SIGTERM and WATCHDOG=1 every half of
\fBWATCHDOG_USEC\fR. Units: net\-receiver.service, net\-receiver.socket,
net\-receiver\-smtps.socket, net\-receiver\-submission.socket.
.SH EXIT STATUS
0 after a stop by signal; 1 on a start\-up error (printed on stderr, naming its culprit).
.SH SEE ALSO
\fBsystemd.socket\fR(5), \fBsystemd\-socket\-activate\fR(1)
"#;

/// Writes `net-receiver.1` and one page per subcommand into `dir`; returns
/// the files written.
pub(crate) fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let command = Args::command();
    let mut written = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("net-receiver-{}", sub.get_name());
        let page = clap_mangen::Man::new(sub.clone().display_name(name));
        written.push(write(dir, &page.get_filename(), |out| page.render(out))?);
    }
    let page = clap_mangen::Man::new(command);
    let path = write(dir, &page.get_filename(), |out| {
        page.render(out)?;
        out.write_all(MORE_SECTIONS.as_bytes())
    })?;
    written.push(path);
    Ok(written)
}

/// Writes completions for bash, zsh and fish into `dir`; returns the files.
pub(crate) fn completions(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let mut command = Args::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            clap_complete::generate_to(shell, &mut command, "net-receiver", dir).with_context(
                || format!("cannot write the {shell} completions in {}", dir.display()),
            )
        })
        .collect()
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write(
    dir: &Path,
    name: &str,
    render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let mut text = Vec::new();
    render(&mut text).with_context(|| format!("cannot render {name}"))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
