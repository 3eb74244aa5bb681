"""P-IDS and U-IDS (paired / unpaired Inception discriminative scores), CoModGAN's definition as
MAT computes it.

A linear SVM (scikit-learn's ``LinearSVC(dual=False)``, default C = 1) is fitted on the 2048-d
Inception features (`ctsdg.fid`) of the real images (label 1) and the inpainted ones (label 0).
**U-IDS** is its misclassification rate on those same features; **P-IDS** is the fraction of
(real, inpainted) pairs in which the inpainted image's decision value exceeds its real image's.
Both are 0 for results a linear classifier tells apart at once and near 0.5 for results it
cannot; higher is better.
"""

from __future__ import annotations

import numpy as np

from ctsdg.errors import InputError


def inception_discriminative_scores(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """``{"p_ids": ..., "u_ids": ...}`` of paired (N, D) feature arrays (row i of each: one pair).

    Raises InputError when the pairs do not match or there are fewer than 2.
    """
    from sklearn.svm import LinearSVC

    if real.shape != fake.shape or real.ndim != 2:
        raise InputError(f"IDS: expected paired (N, D) features, got {real.shape} and {fake.shape}")
    if real.shape[0] < 2:
        raise InputError(f"IDS: {real.shape[0]} pair(s); at least 2 are needed")
    inputs = np.concatenate((real, fake))
    targets = np.concatenate((np.ones(len(real), np.int64), np.zeros(len(fake), np.int64)))
    svm = LinearSVC(dual=False)
    svm.fit(inputs, targets)
    u_ids = 1.0 - float(svm.score(inputs, targets))
    p_ids = float(np.mean(svm.decision_function(fake) > svm.decision_function(real)))
    return {"p_ids": p_ids, "u_ids": u_ids}
