"""Small real models and data for the importer tests, fitted once per session."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="session")
def xy() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, y = make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=0)
    return x, y


@pytest.fixture(scope="session")
def pipeline(xy: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(*xy)


@pytest.fixture(scope="session")
def forest(xy: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> Any:
    return RandomForestClassifier(n_estimators=10, random_state=0).fit(*xy)


@pytest.fixture(scope="session")
def regressor() -> tuple[Any, np.ndarray[Any, Any]]:
    x, y = make_regression(n_samples=100, n_features=5, random_state=0)
    return GradientBoostingRegressor(n_estimators=20, random_state=0).fit(x, y), x
