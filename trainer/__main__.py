"""``python -m trainer ...`` runs the trainer's command line (see trainer/cli.py)."""

from trainer.cli import app

if __name__ == "__main__":
    app()
