"""The domain core both processes stand on: settings, database engines and ORM models, the
experiment spec and its costs, inits, the population flow, the metric store. Imports neither
`service` nor `worker`."""
