"""The logic of ``ledgerflow`` verbs; ``ledgerflow.cli`` only wires them to the parser."""
