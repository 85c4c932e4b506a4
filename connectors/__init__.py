"""Everything that talks to the outside: OPC-UA, files, and the simulated plants."""
