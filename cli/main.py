"""The ``advtf`` command group."""

import click


@click.group()
def advtf():
    """advtf: adversarial robustness research in TensorFlow / Keras."""


def main():
    advtf()
