"""powerlaw_lib: 1/n power-law spectra of neural representations and adversarial robustness.

The library behind the computational paper: covariance eigenspectra and power-law fits
(Stringer et al. 2019), the spectral regularizer of Nassar et al. 2020 (eq. 2), the slope
regularizers of Gerum et al. 2022, the models, a Jacobian-regularization baseline, attacks,
data loading, training, and cached, resumable runs.

Layers (imports point down only): config, hardware -> data, spectrum, models, attacks ->
regularizers, evaluation, theory, plotting -> training -> store, model_cache -> experiments
-> analysis, grids, costs, executors -> command line (`python -m powerlaw_lib`).
"""

__version__ = "0.1.0"
