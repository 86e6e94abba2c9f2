"""Which parameterisations each ott cost supports."""
import pytest

from ott.geometry import costs

from ott_enot import costs as enot_costs


@pytest.mark.parametrize(
    ("cost_fn", "expected"),
    [
        (costs.SqEuclidean(), ("twist", "correlation", "direct")),
        (costs.PNormP(1.5), ("twist", "direct")),
        (costs.SqPNorm(3.0), ("twist", "direct")),
        (costs.Euclidean(), ("direct",)),
        (costs.EuclideanP(1.5), ("direct",)),  # TICost without h_legendre
        (costs.Cosine(), ("direct",)),
    ],
)
def test_supported_parameterisations(cost_fn, expected):
  assert enot_costs.supported_parameterisations(cost_fn) == expected
  assert enot_costs.default_parameterisation(cost_fn) == expected[0]


def test_custom_cost_with_twist_is_twist_capable():

  class Shifted(costs.CostFn):

    def __call__(self, x, y):
      return ((x - y - 1.0) ** 2).sum()

    def twist_operator(self, vec, dual_vec, variable):
      return vec - 1.0 - 0.5 * dual_vec

  assert enot_costs.supported_parameterisations(Shifted())[0] == "twist"


def test_not_a_cost_is_a_type_error():
  with pytest.raises(TypeError, match="cost_fn"):
    enot_costs.supported_parameterisations(lambda x, y: 0.0)
