"""A 1,460-row CSV shaped like Kaggle's house-prices train.csv: Id, 36 numeric and 43 categorical
features under Kaggle's column names (numeric ones with missing values where Kaggle's have them,
categoricals with 2-25 levels and Kaggle's heavy missingness: PoolQC, MiscFeature, Alley, Fence,
FireplaceQu, ...), a positive right-skewed SalePrice last. Deterministic from the seed.

    python bench/house_like.py [PATH]      # default bench/_data/house_like_train.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent / "_data" / "house_like_train.csv"

# name -> (mean, spread, integer?, missing fraction)
NUMERIC = {
    "MSSubClass": (57, 42, True, 0), "LotFrontage": (70, 24, True, 0.177), "LotArea": (10517, 9981, True, 0),
    "OverallQual": (6, 1.4, True, 0), "OverallCond": (5.6, 1.1, True, 0), "YearBuilt": (1971, 30, True, 0),
    "YearRemodAdd": (1985, 21, True, 0), "MasVnrArea": (104, 181, True, 0.005),
    "BsmtFinSF1": (444, 456, True, 0), "BsmtFinSF2": (47, 161, True, 0), "BsmtUnfSF": (567, 441, True, 0),
    "TotalBsmtSF": (1057, 439, True, 0), "1stFlrSF": (1163, 386, True, 0), "2ndFlrSF": (347, 437, True, 0),
    "LowQualFinSF": (6, 49, True, 0), "GrLivArea": (1515, 525, True, 0), "BsmtFullBath": (0.4, 0.5, True, 0),
    "BsmtHalfBath": (0.06, 0.24, True, 0), "FullBath": (1.6, 0.55, True, 0), "HalfBath": (0.4, 0.5, True, 0),
    "BedroomAbvGr": (2.9, 0.8, True, 0), "KitchenAbvGr": (1.05, 0.22, True, 0), "TotRmsAbvGrd": (6.5, 1.6, True, 0),
    "Fireplaces": (0.6, 0.64, True, 0), "GarageYrBlt": (1979, 25, True, 0.055), "GarageCars": (1.8, 0.75, True, 0),
    "GarageArea": (473, 214, True, 0), "WoodDeckSF": (94, 125, True, 0), "OpenPorchSF": (47, 66, True, 0),
    "EnclosedPorch": (22, 61, True, 0), "3SsnPorch": (3, 29, True, 0), "ScreenPorch": (15, 56, True, 0),
    "PoolArea": (3, 40, True, 0), "MiscVal": (43, 496, True, 0), "MoSold": (6.3, 2.7, True, 0),
    "YrSold": (2008, 1.3, True, 0),
}
# name -> (levels, missing fraction)
CATEGORICAL = {
    "MSZoning": (5, 0), "Street": (2, 0), "Alley": (2, 0.938), "LotShape": (4, 0), "LandContour": (4, 0),
    "Utilities": (2, 0), "LotConfig": (5, 0), "LandSlope": (3, 0), "Neighborhood": (25, 0),
    "Condition1": (9, 0), "Condition2": (8, 0), "BldgType": (5, 0), "HouseStyle": (8, 0), "RoofStyle": (6, 0),
    "RoofMatl": (8, 0), "Exterior1st": (15, 0), "Exterior2nd": (16, 0), "MasVnrType": (3, 0.597),
    "ExterQual": (4, 0), "ExterCond": (5, 0), "Foundation": (6, 0), "BsmtQual": (4, 0.025),
    "BsmtCond": (4, 0.025), "BsmtExposure": (4, 0.026), "BsmtFinType1": (6, 0.025), "BsmtFinType2": (6, 0.026),
    "Heating": (6, 0), "HeatingQC": (5, 0), "CentralAir": (2, 0), "Electrical": (5, 0.001), "KitchenQual": (4, 0),
    "Functional": (7, 0), "FireplaceQu": (5, 0.473), "GarageType": (6, 0.055), "GarageFinish": (3, 0.055),
    "GarageQual": (5, 0.055), "GarageCond": (5, 0.055), "PavedDrive": (3, 0), "PoolQC": (3, 0.995),
    "Fence": (4, 0.808), "MiscFeature": (4, 0.963), "SaleType": (9, 0), "SaleCondition": (6, 0),
}


def write_house_like_csv(path=DEFAULT_PATH, rows: int = 1460, seed: int = 0) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns = {"Id": np.arange(1, rows + 1)}
    order = list(NUMERIC) + list(CATEGORICAL)
    rng.shuffle(order)  # Kaggle interleaves numeric and categorical columns
    for name in order:
        if name in NUMERIC:
            mean, spread, integer, missing = NUMERIC[name]
            values = np.abs(rng.normal(mean, spread, rows))
            values = np.round(values) if integer else values
            values[rng.random(rows) < missing] = np.nan
        else:
            levels, missing = CATEGORICAL[name]
            weights = rng.dirichlet(np.ones(levels) * 0.7)
            values = rng.choice([f"{name[:2]}{i}" for i in range(levels)], rows, p=weights).astype(object)
            values[rng.random(rows) < missing] = np.nan
        columns[name] = values
    frame = pd.DataFrame(columns)
    neighborhood_effect = dict(zip(sorted(frame["Neighborhood"].unique()), rng.normal(0, 0.15, 25)))
    log_price = (10.4 + 0.1 * frame["OverallQual"].clip(1, 10)
                 + 0.5 * np.log(frame["GrLivArea"].clip(300) / 1500)
                 + 0.003 * (frame["YearBuilt"] - 1970)
                 + frame["Neighborhood"].map(neighborhood_effect) + rng.normal(0, 0.1, rows))
    frame["SalePrice"] = np.round(np.exp(log_price), -2).astype(int)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


if __name__ == "__main__":
    print(write_house_like_csv(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH))
