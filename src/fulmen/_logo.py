"""`cli_lightning_logo`: the banner Lightning scripts print first thing (`from lightning.pytorch import ...`)."""

LIGHTNING_LOGO: str = r"""
        ________
       /       /
      /       /
     /       /____
    /            /
   /_____       /
        /     /
       /    /
      /   /
     /  /
    / /
   //
"""


def cli_lightning_logo() -> None:
    """Print the logo (a bolt, in magenta) framed by blank lines."""
    print()
    print("\033[0;35m" + LIGHTNING_LOGO + "\033[0m")
    print()
