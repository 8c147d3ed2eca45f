"""The comparison report, in stages that import only the ones before them:

* :mod:`toolkit.report.spec`: what each recipe's report shows (its ``report:`` block);
* :mod:`toolkit.report.collect`: run folders -> :class:`Row` objects (metrics.json,
  config.yaml, the CSV log's validation curve, per-example files on demand);
* :mod:`toolkit.report.tables`: means, 95 % intervals over seeds, the paired bootstrap
  against the reference type, learning curves, the erasure faithfulness per type, the
  cross-modal view;
* :mod:`toolkit.report.figures`, :mod:`toolkit.report.page`, :mod:`toolkit.report.render`:
  figures, the HTML page, and the report folder (``build_report``).

``python -m toolkit.report runs=RUNS out=DIR`` (:mod:`toolkit.commands.report`) writes the
report of any run folders;
``python -m toolkit.compare`` runs a grid first. The names below are this package's API.
"""

from toolkit.metrics.repetition import degenerate
from toolkit.report.collect import (
    COMPARE_FILE,
    ELAPSED_COLUMN,
    LOG_FILE,
    Row,
    budget_of,
    collect,
    disambiguate,
    fill_models,
    find_runs,
    group_rows,
    load_run,
    read_curve,
    sample_outputs,
    samples_of,
    trained_of,
)
from toolkit.report.render import (
    build_report,
    cross_modal_markdown,
    write_csv,
    write_curves_csv,
    write_markdown,
    write_summary_csv,
    write_table,
)
from toolkit.report.spec import (
    CONF_DIR,
    RecipeReport,
    compose_train,
    recipe_names,
    recipe_report,
    report_from_config,
)
from toolkit.report.tables import (
    COST_COLUMNS,
    FAITHFULNESS_METHODS,
    Comparison,
    CrossCell,
    CrossModal,
    Curve,
    CurvePoint,
    Faithfulness,
    GroupStats,
    Significance,
    Table,
    analyse,
    analyse_all,
    budget_table,
    cross_modal,
    diagnostics_of,
    faithfulness_table,
    fmt,
    group_faithfulness,
    learning_curves,
    mean_std,
    metric_table,
    run_table,
    significance_table,
    summary_table,
    summary_values,
)

__all__ = [
    "CONF_DIR", "COMPARE_FILE", "COST_COLUMNS", "ELAPSED_COLUMN", "LOG_FILE", "Comparison",
    "CrossCell", "CrossModal", "Curve", "CurvePoint", "FAITHFULNESS_METHODS", "Faithfulness",
    "GroupStats", "RecipeReport", "Row",
    "Significance", "Table", "analyse", "analyse_all", "budget_of", "budget_table",
    "build_report", "collect", "compose_train", "cross_modal", "cross_modal_markdown",
    "degenerate", "diagnostics_of", "disambiguate", "faithfulness_table", "fill_models",
    "find_runs", "fmt", "group_faithfulness", "group_rows", "learning_curves", "load_run",
    "mean_std", "metric_table",
    "read_curve", "recipe_names", "recipe_report", "report_from_config", "run_table",
    "sample_outputs", "samples_of", "significance_table", "summary_table", "summary_values",
    "trained_of", "write_csv", "write_curves_csv", "write_markdown", "write_summary_csv",
    "write_table",
]  # fmt: skip
