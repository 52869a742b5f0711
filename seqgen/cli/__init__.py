"""The command-line interface: one module per command (group); only this package prints or exits."""


def main() -> None:
    """The `seqgen` command. Ctrl-C while the CLI is still importing exits 130 quietly too (the
    error boundary in seqgen.cli.app covers everything after)."""
    try:
        from seqgen.cli.app import main as run
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    run()
