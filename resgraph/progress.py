"""A progress bar for long solves (``solve(..., progress=True)``), written to stderr by tqdm."""
from __future__ import annotations


class SolveProgress:
    """As a solve goes on: the sweeps done, with the last check's residual (scaled as the
    certificate) and the diodes at their limit, then each active-set step of the polish with the
    diodes it switched, and each Newton step of its interior-point method with its gap. Does nothing unless ``enabled``."""

    def __init__(self, enabled: bool, num_free: int) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm
            self._bar = tqdm(unit=" sweeps", desc=f"solve, {num_free:,} unknowns", dynamic_ncols=True)

    def checked(self, sweeps: int, residual: float, at_limit: int) -> None:
        """``sweeps`` more sweeps done; their residual (relative) and diodes at their limit."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"residual {residual:.1e}, {at_limit:,} diodes at their limit", refresh=False)
            self._bar.update(sweeps)

    def polish_step(self, iteration: int, switched: int, exact: bool) -> None:
        """The polish's step ``iteration`` switched ``switched`` diodes (``exact``: solved to the
        end, not loosely)."""
        if self._bar is not None:
            kind = "exact" if exact else "loose"
            self._bar.set_postfix_str(f"polish step {iteration} ({kind}): {switched:,} diodes switched")

    def interior_step(self, step: int, gap: float) -> None:
        """The polish's interior-point method took Newton step ``step``; ``gap``: its duality gap
        per diode, relative to the currents and potentials in play."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"polish, interior-point step {step}: gap {gap:.1e}")

    def finished(self, converged: bool, kkt: float) -> None:
        """The answer's certificate: its scaled KKT residual and whether it meets ``tol``."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{'converged' if converged else 'NOT converged'}, KKT {kkt:.1e}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
