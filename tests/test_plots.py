import pytest

from nsh.plots import _log_tick


@pytest.mark.parametrize("value, label", [(0.2, "0.2"), (0.5, "0.5"), (1.0, "1"), (0.02, "0.02"), (20.0, "20"),
                                          (0.3, ""), (0.07, ""), (4.0, "")])
def test_sweep_plot_log_axes_label_plain_numbers_at_1_2_5_per_decade_only(value, label):
    assert _log_tick(value, None) == label
