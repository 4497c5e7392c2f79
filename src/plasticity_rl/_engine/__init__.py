"""Performance machinery, kept apart from the model.

Nothing here changes what the model computes, only how fast: each module says why it exists and
is checked against the plain computation it replaces.

- :mod:`.adjoint`: the belief recurrence's reverse pass by the adjoint method;
- :mod:`.special`: log Gamma for the EMA term's Beta density;
- :mod:`.chains`: parallel NUTS chains that take the data as an argument (one compilation per shape);
- :mod:`.warmstart`: a short ADVI run that starts NUTS's chains and its first mass matrix;
- :mod:`.devices`: per-draw work split over the local devices;
- :mod:`.xla`: the guard against a miscompiling XLA:CPU path, and the fit's compiler options.

These modules import only JAX and NumPyro, never the model.
"""
