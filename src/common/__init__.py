"""What every stage needs: atomic files, errors, signals, the command runner, runtime, config, plots."""
