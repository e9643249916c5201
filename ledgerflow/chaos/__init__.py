"""``ledgerflow chaos``: a private cluster under a steady load while faults are injected at
seeded random points, then checks that nothing acknowledged was lost or doubled."""
