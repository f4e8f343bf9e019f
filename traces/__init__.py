"""Everything about traces: the container and its codec, input scripts, recording, replay and
seeking, snapshots, and the tools that work on traces (diff, bisect, export).

Installed as ``aero.traces``. Depends on the machine layer (:mod:`aero`) and on nothing above
it: the command line and the oracles import this package, never the reverse.
"""
