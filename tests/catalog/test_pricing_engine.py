from decimal import Decimal
from types import SimpleNamespace

import pytest

from apps.catalog.pricing import (
    PRICE_MODELS,
    PriceConfigError,
    PricingResult,
    Reservation,
    StandardPricing,
    price_line_amount,
    price_quantity,
    price_reservation,
    price_strategy,
    pricing_strategy,
    reservation_charge,
    validate_properties,
)

D = Decimal

GRADUATED = {
    "tiers": [
        {"upTo": 100, "unitPrice": "0.01"},
        {"upTo": "1000", "unitPrice": "0.008"},
        {"upTo": None, "unitPrice": "0.005"},
    ]
}
GRADUATED_WITH_FEES = {
    "tiers": [
        {"upTo": "10", "unitPrice": "1", "flatFee": "5"},
        {"upTo": None, "unitPrice": "0.5", "flatFee": "3"},
    ]
}
GRADUATED_12_PLACES = {
    "tiers": [
        {"upTo": "0.75", "unitPrice": "123456789012.123456789012", "flatFee": "0.000000000001"},
        {"upTo": "2.5", "unitPrice": "0.333333333333", "flatFee": "1"},
        {"upTo": None, "unitPrice": "0.000000000007"},
    ]
}
SMALLEST_PRICE = {"tiers": [{"upTo": None, "unitPrice": "0.000000000001"}]}
VOLUME = {
    "tiers": [
        {"upTo": "100", "unitPrice": "0.01"},
        {"upTo": "1000", "unitPrice": "0.008", "flatFee": "2"},
        {"upTo": None, "unitPrice": "0.005", "flatFee": "5"},
    ]
}
PACKAGE = {"packageSize": 100, "packagePrice": "5"}
PERCENTAGE = {"percentage": "2.5"}
PERCENTAGE_CLAMPED = {"percentage": "2.5", "minCharge": "0.30", "maxCharge": "10"}


@pytest.mark.parametrize(
    ("unit_price", "quantity", "expected"),
    [
        ("0.01", D(0), D(0)),
        ("0.01", D(7), D("0.07")),
        ("0.01", D("2.5"), D("0.025")),
        ("0.000000000001", D(1), D("0.000000000001")),
        ("0.000000000001", D(10**20), D("100000000")),
        ("0.000000000001", D("0.5"), D(0)),
        ("0.000000000001", D("1.5"), D("0.000000000002")),
        ("0.000000000001", D("2.5"), D("0.000000000002")),
        ("123456789012.123456789012", D(1), D("123456789012.123456789012")),
        ("123456789012.123456789012", D("0.5"), D("61728394506.061728394506")),
        ("123456789012.123456789012", D(10**14), D("12345678901212345678901200")),
        ("123456789012.123456789012", D("0.000000000001"), D("0.123456789012")),
        ("0.999999999999", D(10**26 - 1), D("99999999999899999999999999.000000000001")),
    ],
)
def test_standard_charges_quantity_times_unit_price_rounded_half_even_once(unit_price, quantity, expected):
    result = price_quantity(pricing_strategy("standard", {"unitPrice": unit_price}), quantity)

    assert result.amount == expected
    assert result.billable_quantity == quantity
    assert result.unit_price == (D(unit_price) if quantity else D(0))
    assert result.tiers == ()


@pytest.mark.parametrize(
    ("quantity", "units_before", "expected", "tier_units"),
    [
        (D(0), D(0), D(0), ()),
        (D(1), D(0), D("0.01"), ((0, D(1)),)),
        (D(100), D(0), D("1"), ((0, D(100)),)),
        (D(101), D(0), D("1.008"), ((0, D(100)), (1, D(1)))),
        (D("100.5"), D(0), D("1.004"), ((0, D(100)), (1, D("0.5")))),
        (D("100.000000000001"), D(0), D("1.000000000000"), ((0, D(100)), (1, D("0.000000000001")))),
        (D(1000), D(0), D("8.2"), ((0, D(100)), (1, D(900)))),
        (D(1001), D(0), D("8.205"), ((0, D(100)), (1, D(900)), (2, D(1)))),
        (D(10**20), D(0), D("500000000000000003.2"), ((0, D(100)), (1, D(900)), (2, D(10**20 - 1000)))),
        (D(1), D(99), D("0.01"), ((0, D(1)),)),
        (D(1), D(100), D("0.008"), ((1, D(1)),)),
        (D(20), D(90), D("0.18"), ((0, D(10)), (1, D(10)))),
        (D("0.5"), D("99.75"), D("0.0045"), ((0, D("0.25")), (1, D("0.25")))),
        (D(2000), D(50), D("12.95"), ((0, D(50)), (1, D(900)), (2, D(1050)))),
        (D(0), D(100), D(0), ()),
    ],
)
def test_graduated_charges_the_running_total_split_at_inclusive_tier_edges(
    quantity, units_before, expected, tier_units
):
    result = price_quantity(pricing_strategy("graduated", GRADUATED), quantity, units_before=units_before)

    assert result.amount == expected
    assert tuple((tier.index, tier.units) for tier in result.tiers) == tier_units
    assert sum((tier.amount for tier in result.tiers), D(0)) == result.amount


@pytest.mark.parametrize(
    ("quantity", "units_before", "expected", "tier_fees"),
    [
        (D(0), D(0), D(0), ()),
        (D("0.5"), D(0), D("5.5"), ((0, D(5)),)),
        (D(1), D(0), D(6), ((0, D(5)),)),
        (D(10), D(0), D(15), ((0, D(5)),)),
        (D(11), D(0), D("18.5"), ((0, D(5)), (1, D(3)))),
        (D(1), D(9), D(1), ((0, D(0)),)),
        (D(1), D(10), D("3.5"), ((1, D(3)),)),
        (D(1), D(11), D("0.5"), ((1, D(0)),)),
        (D(10), D(5), D("10.5"), ((0, D(0)), (1, D(3)))),
    ],
)
def test_graduated_flat_fee_is_charged_once_by_the_event_entering_the_tier(quantity, units_before, expected, tier_fees):
    result = price_quantity(pricing_strategy("graduated", GRADUATED_WITH_FEES), quantity, units_before=units_before)

    assert result.amount == expected
    assert tuple((tier.index, tier.flat_fee) for tier in result.tiers) == tier_fees
    assert all(tier.amount == tier.units * tier.unit_price + tier.flat_fee for tier in result.tiers)


@pytest.mark.parametrize(
    ("properties", "free_units", "events"),
    [
        (GRADUATED, D(0), [D(40), D(40), D(40)]),
        (GRADUATED, D(0), [D(99), D(1), D(1), D(899), D(1), D(5000)]),
        (GRADUATED, D(50), [D(60), D(100), D(900), D(3)]),
        (GRADUATED, D(0), [D("0.3"), D("99.7"), D("0.000000000001"), D("1234.5")]),
        (GRADUATED_WITH_FEES, D(0), [D(3), D(7), D(1), D(4)]),
        (GRADUATED_WITH_FEES, D(12), [D(5), D(5), D("2.5"), D(1), D(10)]),
        (GRADUATED_12_PLACES, D(0), [D("0.3"), D("0.7"), D(1), D("0.123456"), D(5)]),
        (GRADUATED_12_PLACES, D("0.1"), [D("0.05"), D("0.05"), D("0.333"), D("2.9999999999999")]),
        (SMALLEST_PRICE, D(0), [D("0.5")] * 4),
        (GRADUATED, D(0), [D(10**20), D(10**20)]),
    ],
)
def test_instant_graduated_charges_sum_to_the_graduated_price_of_the_total(properties, free_units, events):
    charged = D(0)
    units_before = D(0)
    for quantity in events:
        result = price_quantity(
            pricing_strategy("graduated", properties), quantity, free_units=free_units, units_before=units_before
        )
        charged += result.amount
        units_before += quantity

    period = price_quantity(pricing_strategy("graduated", properties), units_before, free_units=free_units)

    assert charged == period.amount


def test_instant_graduated_charges_telescope_where_each_event_alone_would_round_away():
    amounts = []
    for units_before in (D(0), D("0.5"), D(1), D("1.5")):
        amounts.append(
            price_quantity(pricing_strategy("graduated", SMALLEST_PRICE), D("0.5"), units_before=units_before).amount
        )

    assert amounts == [D(0), D("0.000000000001"), D("0.000000000001"), D(0)]
    assert price_quantity(pricing_strategy("graduated", SMALLEST_PRICE), D(2)).amount == D("0.000000000002")


@pytest.mark.parametrize(
    ("model", "properties", "free_units", "events", "expected_billable", "expected_amounts"),
    [
        (
            "standard",
            {"unitPrice": "0.01"},
            D(100),
            [D(40), D(40), D(40), D(40)],
            [D(0), D(0), D(20), D(40)],
            [D(0), D(0), D("0.2"), D("0.4")],
        ),
        (
            "graduated",
            GRADUATED,
            D(50),
            [D(30), D(30), D(100)],
            [D(0), D(10), D(100)],
            [D(0), D("0.1"), D("0.98")],
        ),
        (
            "package",
            PACKAGE,
            D(150),
            [D(100), D(100), D(100)],
            [D(0), D(50), D(100)],
            [D(0), D(5), D(5)],
        ),
        (
            "percentage",
            PERCENTAGE,
            D("10.5"),
            [D(10), D(10)],
            [D(0), D("9.5")],
            [D(0), D("0.2375")],
        ),
    ],
)
def test_free_units_are_used_up_across_the_events_of_a_period(
    model, properties, free_units, events, expected_billable, expected_amounts
):
    units_before = D(0)
    results = []
    for quantity in events:
        results.append(
            price_quantity(
                pricing_strategy(model, properties), quantity, free_units=free_units, units_before=units_before
            )
        )
        units_before += quantity

    assert [result.billable_quantity for result in results] == expected_billable
    assert [result.amount for result in results] == expected_amounts


@pytest.mark.parametrize(
    ("quantity", "expected", "tier_index", "unit_price"),
    [
        (D(0), D(0), None, D(0)),
        (D(1), D("0.01"), 0, D("0.01")),
        (D(100), D(1), 0, D("0.01")),
        (D(101), D("2.808"), 1, D("0.027801980198")),
        (D("100.000000000001"), D("2.8"), 1, D("0.028")),
        (D(1000), D(10), 1, D("0.01")),
        (D(1001), D("10.005"), 2, D("0.009995004995")),
        (D(10**20), D("500000000000000005"), 2, D("0.005")),
    ],
)
def test_volume_prices_all_units_at_the_tier_the_quantity_falls_in(quantity, expected, tier_index, unit_price):
    result = price_quantity(pricing_strategy("volume", VOLUME), quantity)

    assert result.amount == expected
    assert result.unit_price == unit_price
    assert tuple(tier.index for tier in result.tiers) == (() if tier_index is None else (tier_index,))


def test_volume_prices_the_quantity_given_without_a_running_total():
    result = price_quantity(pricing_strategy("volume", VOLUME), D(50), units_before=D(500))

    assert result.amount == D("0.5")
    assert result.tiers[0].index == 0


@pytest.mark.parametrize(
    ("properties", "quantity", "free_units", "expected"),
    [
        (PACKAGE, D(0), D(0), D(0)),
        (PACKAGE, D(1), D(0), D(5)),
        (PACKAGE, D(100), D(0), D(5)),
        (PACKAGE, D(101), D(0), D(10)),
        (PACKAGE, D("100.5"), D(0), D(10)),
        (PACKAGE, D(200), D(0), D(10)),
        (PACKAGE, D(110), D(10), D(5)),
        (PACKAGE, D(10**20), D(0), D("5000000000000000000")),
        ({"packageSize": 3, "packagePrice": "0.000000000001"}, D(10**20 + 1), D(0), D("33333333.333333333334")),
    ],
)
def test_package_charges_every_started_package_whole(properties, quantity, free_units, expected):
    result = price_quantity(pricing_strategy("package", properties), quantity, free_units=free_units)

    assert result.amount == expected


HUNDRED_FOR_ONE = {"packageSize": 100, "packagePrice": "1"}


@pytest.mark.parametrize(
    ("properties", "quantity", "units_before", "free_units", "expected", "billable"),
    [
        (HUNDRED_FOR_ONE, D(1), D(0), D(0), D(1), D(1)),
        (HUNDRED_FOR_ONE, D(1), D(1), D(0), D(0), D(1)),
        (HUNDRED_FOR_ONE, D(1), D(99), D(0), D(0), D(1)),
        (HUNDRED_FOR_ONE, D(1), D(100), D(0), D(1), D(1)),
        (HUNDRED_FOR_ONE, D(100), D(0), D(0), D(1), D(100)),
        (HUNDRED_FOR_ONE, D(100), D(1), D(0), D(1), D(100)),
        (HUNDRED_FOR_ONE, D(100), D(50), D(0), D(1), D(100)),
        (HUNDRED_FOR_ONE, D(150), D(50), D(0), D(1), D(150)),
        (HUNDRED_FOR_ONE, D(151), D(50), D(0), D(2), D(151)),
        (HUNDRED_FOR_ONE, D("0.5"), D("99.75"), D(0), D(1), D("0.5")),
        (HUNDRED_FOR_ONE, D("0.25"), D("99.75"), D(0), D(0), D("0.25")),
        (HUNDRED_FOR_ONE, D(0), D(37), D(0), D(0), D(0)),
        # free units first: 5 of the 10 free units left, so 5 billable units start the first package
        (HUNDRED_FOR_ONE, D(10), D(5), D(10), D(1), D(5)),
        (HUNDRED_FOR_ONE, D(10), D(10), D(10), D(1), D(10)),
        (HUNDRED_FOR_ONE, D(10), D(20), D(10), D(0), D(10)),
        (HUNDRED_FOR_ONE, D(100), D(0), D(100), D(0), D(0)),
        (PACKAGE, D(1), D(10**20), D(0), D(5), D(1)),
        (PACKAGE, D(1), D(10**20 - 1), D(0), D(0), D(1)),
        ({"packageSize": 3, "packagePrice": "0.000000000001"}, D(1), D(3), D(0), D("0.000000000001"), D(1)),
        ({"packageSize": 3, "packagePrice": "0.000000000001"}, D(2), D(4), D(0), D(0), D(2)),
    ],
)
def test_instant_package_charges_the_packages_the_event_starts_over_the_running_total(
    properties, quantity, units_before, free_units, expected, billable
):
    result = price_quantity(
        pricing_strategy("package", properties), quantity, free_units=free_units, units_before=units_before
    )

    assert result.amount == expected
    assert result.billable_quantity == billable


@pytest.mark.parametrize(
    ("properties", "free_units", "events", "period_amount"),
    [
        (HUNDRED_FOR_ONE, D(0), [D(1)] * 100, D(1)),
        (HUNDRED_FOR_ONE, D(0), [D(1)] * 101, D(2)),
        (HUNDRED_FOR_ONE, D(0), [D(40), D(40), D(40), D(80)], D(2)),
        (HUNDRED_FOR_ONE, D(0), [D("0.5")] * 201, D(2)),
        (HUNDRED_FOR_ONE, D(30), [D(10)] * 13, D(1)),
        (PACKAGE, D(150), [D(100), D(100), D(100)], D(10)),
        ({"packageSize": 3, "packagePrice": "0.000000000001"}, D(0), [D(1)] * 10, D("0.000000000004")),
    ],
)
def test_instant_package_charges_sum_to_the_package_price_of_the_total(properties, free_units, events, period_amount):
    strategy = pricing_strategy("package", properties)
    charged = D(0)
    units_before = D(0)
    for quantity in events:
        charged += price_quantity(strategy, quantity, free_units=free_units, units_before=units_before).amount
        units_before += quantity

    assert charged == period_amount
    assert charged == price_quantity(strategy, units_before, free_units=free_units).amount


@pytest.mark.parametrize(
    ("properties", "quantity", "expected", "unit_price"),
    [
        (PERCENTAGE, D(0), D(0), D(0)),
        (PERCENTAGE, D(100), D("2.5"), D("0.025")),
        (PERCENTAGE, D("0.01"), D("0.00025"), D("0.025")),
        (PERCENTAGE, D("0.333333333333"), D("0.008333333333"), D("0.025")),
        ({"percentage": "100"}, D(7), D(7), D(1)),
        (PERCENTAGE_CLAMPED, D(0), D(0), D(0)),
        (PERCENTAGE_CLAMPED, D(10), D("0.3"), D("0.03")),
        (PERCENTAGE_CLAMPED, D("0.000000000001"), D("0.3"), D("300000000000")),
        (PERCENTAGE_CLAMPED, D(12), D("0.3"), D("0.025")),
        (PERCENTAGE_CLAMPED, D(100), D("2.5"), D("0.025")),
        (PERCENTAGE_CLAMPED, D(400), D(10), D("0.025")),
        (PERCENTAGE_CLAMPED, D(1000), D(10), D("0.01")),
    ],
)
def test_percentage_is_clamped_to_min_and_max_charge(properties, quantity, expected, unit_price):
    result = price_quantity(pricing_strategy("percentage", properties), quantity)

    assert result.amount == expected
    assert result.unit_price == unit_price


@pytest.mark.parametrize(
    ("model", "properties", "quantity", "unit_price"),
    [
        ("standard", {"unitPrice": "0.000000000001"}, D("0.5"), D("0.000000000001")),
        ("graduated", GRADUATED, D(50), D("0.01")),
        ("graduated", GRADUATED, D(150), D("0.009333333333")),
        ("graduated", GRADUATED_WITH_FEES, D(2), D("3.5")),
        ("package", PACKAGE, D(150), D("0.066666666667")),
    ],
)
def test_unit_price_is_the_configured_price_where_exact_else_amount_over_quantity(
    model, properties, quantity, unit_price
):
    assert price_quantity(pricing_strategy(model, properties), quantity).unit_price == unit_price


@pytest.mark.parametrize("model", PRICE_MODELS)
def test_zero_quantity_costs_nothing_for_every_model(model):
    properties = {
        "standard": {"unitPrice": "1"},
        "graduated": GRADUATED_WITH_FEES,
        "volume": VOLUME,
        "package": PACKAGE,
        "percentage": PERCENTAGE_CLAMPED,
    }[model]

    assert price_quantity(pricing_strategy(model, properties), D(0)) == PricingResult(
        amount=D(0), billable_quantity=D(0), unit_price=D(0), tiers=()
    )


@pytest.mark.parametrize(
    ("model", "properties", "normalized"),
    [
        ("standard", {"unitPrice": "0.0010"}, {"unitPrice": "0.001"}),
        ("standard", {"unitPrice": 5}, {"unitPrice": "5"}),
        ("standard", {"unitPrice": "1E+2"}, {"unitPrice": "100"}),
        ("standard", {"unitPrice": D("0.000")}, {"unitPrice": "0"}),
        (
            "standard",
            {"unitPrice": "99999999999999999999999999.999999999999"},
            {"unitPrice": "99999999999999999999999999.999999999999"},
        ),
        (
            "graduated",
            {"tiers": [{"upTo": 100, "unitPrice": "0.010"}, {"unitPrice": "0.005", "flatFee": "2.50"}]},
            {
                "tiers": [
                    {"upTo": "100", "unitPrice": "0.01", "flatFee": "0"},
                    {"upTo": None, "unitPrice": "0.005", "flatFee": "2.5"},
                ]
            },
        ),
        (
            "volume",
            {"tiers": [{"upTo": "0.5", "unitPrice": "1"}, {"upTo": None, "unitPrice": "0", "flatFee": None}]},
            {
                "tiers": [
                    {"upTo": "0.5", "unitPrice": "1", "flatFee": "0"},
                    {"upTo": None, "unitPrice": "0", "flatFee": "0"},
                ]
            },
        ),
        ("package", {"packageSize": "100", "packagePrice": "5.00"}, {"packageSize": 100, "packagePrice": "5"}),
        (
            "percentage",
            {"percentage": "2.50"},
            {"percentage": "2.5", "minCharge": None, "maxCharge": None},
        ),
        (
            "percentage",
            {"percentage": 100, "minCharge": "0.10", "maxCharge": "0.1"},
            {"percentage": "100", "minCharge": "0.1", "maxCharge": "0.1"},
        ),
    ],
)
def test_validate_properties_returns_a_canonical_copy_that_validates_again(model, properties, normalized):
    assert validate_properties(model, properties) == normalized
    assert validate_properties(model, normalized) == normalized


@pytest.mark.parametrize(
    ("model", "properties", "quantity"),
    [
        ("graduated", GRADUATED_WITH_FEES, D("12.5")),
        ("volume", VOLUME, D(1001)),
        ("package", PACKAGE, D(101)),
        ("percentage", PERCENTAGE_CLAMPED, D(50)),
    ],
)
def test_price_quantity_accepts_normalized_properties(model, properties, quantity):
    normalized = validate_properties(model, properties)

    assert price_quantity(pricing_strategy(model, normalized), quantity) == price_quantity(
        pricing_strategy(model, properties), quantity
    )


def tiers(*tier_list):
    return {"tiers": list(tier_list)}


@pytest.mark.parametrize(
    ("model", "properties", "field", "code"),
    [
        ("tiered", {"unitPrice": "1"}, "model", "UNKNOWN_MODEL"),
        (None, {"unitPrice": "1"}, "model", "UNKNOWN_MODEL"),
        ("standard", [], "properties", "INVALID_PROPERTIES"),
        ("standard", {}, "properties.unitPrice", "FIELD_REQUIRED"),
        ("standard", {"unitPrice": None}, "properties.unitPrice", "FIELD_REQUIRED"),
        ("standard", {"unitPrice": "1", "unit_price": "1"}, "properties.unit_price", "UNKNOWN_FIELD"),
        ("standard", {"unitPrice": 0.001}, "properties.unitPrice", "FLOAT_NOT_ALLOWED"),
        ("standard", {"unitPrice": 1.0}, "properties.unitPrice", "FLOAT_NOT_ALLOWED"),
        ("standard", {"unitPrice": "-0.01"}, "properties.unitPrice", "INVALID_UNIT_PRICE"),
        ("standard", {"unitPrice": "0.0000000000001"}, "properties.unitPrice", "INVALID_UNIT_PRICE"),
        ("standard", {"unitPrice": str(10**26)}, "properties.unitPrice", "INVALID_UNIT_PRICE"),
        ("standard", {"unitPrice": "abc"}, "properties.unitPrice", "INVALID_UNIT_PRICE"),
        ("standard", {"unitPrice": "NaN"}, "properties.unitPrice", "INVALID_UNIT_PRICE"),
        ("standard", {"unitPrice": "Infinity"}, "properties.unitPrice", "INVALID_UNIT_PRICE"),
        ("standard", {"unitPrice": True}, "properties.unitPrice", "INVALID_UNIT_PRICE"),
        ("standard", {"unitPrice": ["1"]}, "properties.unitPrice", "INVALID_UNIT_PRICE"),
        ("graduated", {}, "properties.tiers", "FIELD_REQUIRED"),
        ("graduated", {"tiers": {"upTo": None}}, "properties.tiers", "INVALID_TIERS"),
        ("graduated", tiers(), "properties.tiers", "TIERS_REQUIRED"),
        ("graduated", tiers("0.01"), "properties.tiers[0]", "INVALID_PROPERTIES"),
        ("graduated", tiers({"upTo": None}), "properties.tiers[0].unitPrice", "FIELD_REQUIRED"),
        (
            "graduated",
            tiers({"upTo": None, "unitPrice": "1", "up_to": 5}),
            "properties.tiers[0].up_to",
            "UNKNOWN_FIELD",
        ),
        (
            "graduated",
            tiers({"upTo": 100, "unitPrice": "1"}, {"upTo": 100, "unitPrice": "1"}, {"unitPrice": "1"}),
            "properties.tiers[1].upTo",
            "TIERS_OVERLAP",
        ),
        (
            "graduated",
            tiers({"upTo": 100, "unitPrice": "1"}, {"upTo": 1000, "unitPrice": "1"}, {"upTo": 500, "unitPrice": "1"}),
            "properties.tiers[2].upTo",
            "TIERS_OVERLAP",
        ),
        (
            "volume",
            tiers({"upTo": "10.5", "unitPrice": "1"}, {"upTo": "10.25", "unitPrice": "1"}, {"unitPrice": "1"}),
            "properties.tiers[1].upTo",
            "TIERS_OVERLAP",
        ),
        (
            "graduated",
            tiers({"upTo": None, "unitPrice": "1"}, {"upTo": None, "unitPrice": "1"}),
            "properties.tiers[0].upTo",
            "TIERS_GAP",
        ),
        (
            "volume",
            tiers({"upTo": 100, "unitPrice": "1"}, {"upTo": 1000, "unitPrice": "1"}),
            "properties.tiers[1].upTo",
            "TIERS_GAP",
        ),
        (
            "graduated",
            tiers({"upTo": 0, "unitPrice": "1"}, {"unitPrice": "1"}),
            "properties.tiers[0].upTo",
            "INVALID_UP_TO",
        ),
        (
            "graduated",
            tiers({"upTo": "-5", "unitPrice": "1"}, {"unitPrice": "1"}),
            "properties.tiers[0].upTo",
            "INVALID_UP_TO",
        ),
        (
            "graduated",
            tiers({"upTo": 10.5, "unitPrice": "1"}, {"unitPrice": "1"}),
            "properties.tiers[0].upTo",
            "FLOAT_NOT_ALLOWED",
        ),
        (
            "graduated",
            tiers({"upTo": 10, "unitPrice": "1"}, {"unitPrice": 0.5}),
            "properties.tiers[1].unitPrice",
            "FLOAT_NOT_ALLOWED",
        ),
        (
            "graduated",
            tiers({"upTo": 10, "unitPrice": "1", "flatFee": "-1"}, {"unitPrice": "1"}),
            "properties.tiers[0].flatFee",
            "INVALID_FLAT_FEE",
        ),
        (
            "volume",
            tiers({"upTo": 10, "unitPrice": "1"}, {"unitPrice": "1.0000000000001"}),
            "properties.tiers[1].unitPrice",
            "INVALID_UNIT_PRICE",
        ),
        ("package", {"packagePrice": "5"}, "properties.packageSize", "FIELD_REQUIRED"),
        ("package", {"packageSize": 0, "packagePrice": "5"}, "properties.packageSize", "INVALID_PACKAGE_SIZE"),
        ("package", {"packageSize": "1.5", "packagePrice": "5"}, "properties.packageSize", "INVALID_PACKAGE_SIZE"),
        ("package", {"packageSize": -100, "packagePrice": "5"}, "properties.packageSize", "INVALID_PACKAGE_SIZE"),
        ("package", {"packageSize": 100.0, "packagePrice": "5"}, "properties.packageSize", "FLOAT_NOT_ALLOWED"),
        ("package", {"packageSize": 100, "packagePrice": "-5"}, "properties.packagePrice", "INVALID_PACKAGE_PRICE"),
        ("percentage", {"percentage": "0"}, "properties.percentage", "INVALID_PERCENTAGE"),
        ("percentage", {"percentage": "100.01"}, "properties.percentage", "INVALID_PERCENTAGE"),
        ("percentage", {"percentage": "-2.5"}, "properties.percentage", "INVALID_PERCENTAGE"),
        ("percentage", {"percentage": 2.5}, "properties.percentage", "FLOAT_NOT_ALLOWED"),
        ("percentage", {"percentage": "2.5", "minCharge": 0.3}, "properties.minCharge", "FLOAT_NOT_ALLOWED"),
        ("percentage", {"percentage": "2.5", "maxCharge": "-1"}, "properties.maxCharge", "INVALID_MAX_CHARGE"),
        (
            "percentage",
            {"percentage": "2.5", "minCharge": "10", "maxCharge": "9.99"},
            "properties.minCharge",
            "MIN_CHARGE_ABOVE_MAX_CHARGE",
        ),
    ],
)
def test_validate_properties_rejects_unusable_prices_naming_field_and_code(model, properties, field, code):
    with pytest.raises(PriceConfigError) as excinfo:
        validate_properties(model, properties)

    assert (excinfo.value.field, excinfo.value.code) == (field, code)
    assert excinfo.value.as_dict() == {"field": field, "message": excinfo.value.message, "code": code}
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("properties", "fragments"),
    [
        (
            tiers({"upTo": 100, "unitPrice": "1"}, {"upTo": 50, "unitPrice": "1"}, {"unitPrice": "1"}),
            ["tiers[1]", "upTo 50", "tiers[0]", "upTo 100", "overlaps"],
        ),
        (
            tiers({"upTo": 100, "unitPrice": "1"}, {"upTo": "1000.50", "unitPrice": "1"}),
            ["tiers[1]", "last tier", "above 1000.5", "null"],
        ),
        (
            tiers({"upTo": 100, "unitPrice": "1"}, {"unitPrice": "1"}, {"unitPrice": "1"}),
            ["tiers[1]", "no upTo", "tiers[2]", "never apply"],
        ),
        (tiers({"unitPrice": 0.001}), ["properties.tiers[0].unitPrice", "string", "0.001"]),
        (tiers({"unitPrice": "0.1234567890123"}), ["properties.tiers[0].unitPrice", "13 digits", "12"]),
    ],
)
def test_validation_messages_name_the_tier_and_its_values(properties, fragments):
    with pytest.raises(PriceConfigError) as excinfo:
        validate_properties("graduated", properties)

    for fragment in fragments:
        assert fragment in excinfo.value.message
    assert str(excinfo.value) == excinfo.value.message


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"quantity": D(-1)}, ValueError, "quantity must be 0 or more"),
        ({"quantity": D("-0.000000000001")}, ValueError, "quantity must be 0 or more"),
        ({"quantity": D(1), "free_units": D(-1)}, ValueError, "free_units must be 0 or more"),
        ({"quantity": D(1), "units_before": D(-1)}, ValueError, "units_before must be 0 or more"),
        ({"quantity": D("NaN")}, ValueError, "quantity must be a finite number"),
        ({"quantity": 1.5}, TypeError, "quantity must be a Decimal or an int, not float"),
        ({"quantity": True}, TypeError, "quantity must be a Decimal or an int, not bool"),
    ],
)
def test_price_quantity_refuses_quantities_it_cannot_price(kwargs, error, match):
    with pytest.raises(error, match=match):
        price_quantity(pricing_strategy("standard", {"unitPrice": "1"}), **kwargs)


def test_price_quantity_refuses_invalid_properties_like_validation_does():
    with pytest.raises(PriceConfigError) as excinfo:
        price_quantity(pricing_strategy("graduated", tiers({"upTo": 10, "unitPrice": "1"})), D(1))

    assert (excinfo.value.field, excinfo.value.code) == ("properties.tiers[0].upTo", "TIERS_GAP")


def test_price_quantity_accepts_int_quantities():
    result = price_quantity(pricing_strategy("standard", {"unitPrice": "0.5"}), 3, free_units=1, units_before=0)

    assert result.amount == D(1)
    assert result.billable_quantity == D(2)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("0", "0"),
        ("0.000", "0"),
        ("-0", "0"),
        ("-0.00", "0"),
        ("1E-12", "0.000000000001"),
        ("1.50", "1.5"),
        ("1E+5", "100000"),
        ("99999999999999999999999999.999999999999", "99999999999999999999999999.999999999999"),
    ],
)
def test_validate_properties_stores_plain_notation_without_a_sign_on_zero(raw, stored):
    assert validate_properties("standard", {"unitPrice": raw}) == {"unitPrice": stored}
    assert validate_properties("graduated", tiers({"upTo": None, "unitPrice": "1", "flatFee": raw})) == tiers(
        {"upTo": None, "unitPrice": "1", "flatFee": stored}
    )


def catalog_price(model, properties, free_units="0"):
    """What the engine reads of a catalog Price."""
    return SimpleNamespace(model=model, properties=properties, free_units=D(free_units))


@pytest.mark.parametrize(
    ("model", "properties", "free_units", "quantity", "units_before"),
    [
        ("standard", {"unitPrice": "0.001"}, "0", D(7), D(0)),
        ("graduated", GRADUATED_WITH_FEES, "3", D("12.5"), D(2)),
        ("volume", VOLUME, "0", D(1001), D(0)),
        ("package", PACKAGE, "50", D(101), D(10)),
        ("percentage", PERCENTAGE_CLAMPED, "0", D(50), D(0)),
    ],
)
def test_price_line_amount_without_override_prices_the_price_model(
    model, properties, free_units, quantity, units_before
):
    price = catalog_price(model, properties, free_units)

    assert price_line_amount(price, quantity, None, units_before) == price_quantity(
        pricing_strategy(model, properties), quantity, free_units=D(free_units), units_before=units_before
    )


def test_price_line_amount_charges_an_override_per_unit_after_the_free_units_left():
    price = catalog_price("graduated", GRADUATED_WITH_FEES, free_units="5")

    # 2 of the 5 free units already used: 3 of the 10 units are free, 7 at the override
    result = price_line_amount(price, D(10), D("0.25"), D(2))

    assert result == PricingResult(amount=D("1.75"), billable_quantity=D(7), unit_price=D("0.25"))


def test_price_strategy_reads_the_strategy_parsed_by_the_plan_price_cache():
    price = catalog_price("standard", {"unitPrice": "1"})
    assert price_strategy(price) == StandardPricing(unit_price=D(1))

    price.parsed_strategy = StandardPricing(unit_price=D("0.5"))

    assert price_line_amount(price, D(3), None, D(0)).amount == D("1.5")


# --- holds: what an entitlement reserved, and what each use of it is charged -----------------


def reservation(model, properties, free_units="0", units_before="0"):
    return Reservation(pricing_strategy(model, properties), free_units=D(free_units), units_before=D(units_before))


def consume(hold, reserved, uses):
    """Charge `uses` in order against a fresh hold of `reserved` units: [("use", q) | ("refund", i)]
    (refund gives the i-th use's units and amount back); returns the charges of the uses."""
    remaining_quantity, remaining_amount = reserved, hold.amount(reserved)
    charges: list = []
    for kind, value in uses:
        if kind == "use":
            charge = reservation_charge(
                hold,
                reserved=reserved,
                consumed=reserved - remaining_quantity,
                quantity=value,
                remaining_amount=remaining_amount,
            ).amount
            charges.append((value, charge))
            remaining_quantity -= value
            remaining_amount -= charge
        else:
            quantity, charge = charges[value]
            charges[value] = (quantity, None)
            remaining_quantity += quantity
            remaining_amount += charge
    return [charge for _, charge in charges]


@pytest.mark.parametrize(
    ("model", "properties", "free_units", "quantity", "override", "units_before"),
    [
        ("standard", {"unitPrice": "0.001"}, "0", D(7), None, D(0)),
        ("standard", {"unitPrice": "0.001"}, "10", D(7), None, D(5)),
        ("graduated", GRADUATED, "0", D(20), None, D(90)),
        ("graduated", GRADUATED_WITH_FEES, "3", D("12.5"), None, D(2)),
        ("package", HUNDRED_FOR_ONE, "0", D(100), None, D(50)),
        ("percentage", PERCENTAGE_CLAMPED, "0", D(50), None, D(0)),
        ("graduated", GRADUATED, "5", D(10), D("0.25"), D(2)),
    ],
)
def test_a_reservation_reserves_what_the_price_charges_now(
    model, properties, free_units, quantity, override, units_before
):
    price = catalog_price(model, properties, free_units)

    hold = price_reservation(price, override, units_before)

    assert hold.amount(quantity) == price_line_amount(price, quantity, override, units_before).amount
    assert hold.units_before == units_before
    assert hold.free_units == D(free_units)
    assert hold.strategy == (pricing_strategy(model, properties) if override is None else StandardPricing(override))


@pytest.mark.parametrize(
    ("hold", "reserved", "uses", "charges"),
    [
        # 10 units at 0.01 up to 100, then 0.008: reserved at a running total of 90
        (reservation("graduated", GRADUATED, units_before="90"), D(20), [5, 10, 5], ["0.05", "0.09", "0.04"]),
        (reservation("graduated", GRADUATED, units_before="90"), D(20), [20], ["0.18"]),
        # a tier's flat fee is charged by the use that enters the tier
        (reservation("graduated", GRADUATED_WITH_FEES, units_before="8"), D(5), [2, 1, 2], ["2", "3.5", "1"]),
        (reservation("package", HUNDRED_FOR_ONE, units_before="50"), D(100), [50, 1, 49], ["0", "1", "0"]),
        (reservation("package", HUNDRED_FOR_ONE), D(100), [1] * 4 + [96], ["1", "0", "0", "0", "0"]),
        # 6 of the 10 free units left when it reserved
        (
            reservation("standard", {"unitPrice": "0.1"}, free_units="10", units_before="4"),
            D(20),
            [5, 5, 10],
            ["0", "0.4", "1"],
        ),
        # the charges telescope where each use alone would round away
        (reservation("standard", {"unitPrice": "0.000000000001"}), D(2), [D("0.5")] * 4, ["0", "1E-12", "1E-12", "0"]),
        (reservation("percentage", PERCENTAGE_CLAMPED), D(100), [10, 10, 80], ["0.3", "0.2", "2"]),
        (reservation("standard", {"unitPrice": "0.01"}), D(100), [10] * 10, ["0.1"] * 10),
    ],
)
def test_a_hold_charges_its_reserved_units_in_order_and_sums_to_what_it_reserved(hold, reserved, uses, charges):
    charged = consume(hold, reserved, [("use", D(q)) for q in uses])

    assert charged == [D(c) for c in charges]
    assert sum(charged, D(0)) == hold.amount(reserved)


def test_a_hold_charges_the_same_whatever_the_running_total_does_after_it_reserved():
    hold = reservation("graduated", GRADUATED, units_before="90")

    first = reservation_charge(hold, reserved=D(20), consumed=D(0), quantity=D(10), remaining_amount=D("0.18"))

    # at a running total of 90 the first 10 units are all in the first tier, whatever came since
    assert first.amount == D("0.1")
    assert first.unit_price == D("0.01")
    assert first.billable_quantity == D(10)


@pytest.mark.parametrize(
    ("hold", "reserved", "uses"),
    [
        (
            reservation("graduated", GRADUATED, units_before="90"),
            D(20),
            [("use", 5), ("use", 10), ("refund", 0), ("use", 5), ("use", 5)],
        ),
        (
            reservation("graduated", GRADUATED_WITH_FEES, units_before="8"),
            D(5),
            [("use", 3), ("refund", 0), ("use", 1), ("use", 4)],
        ),
        (
            reservation("package", HUNDRED_FOR_ONE, units_before="50"),
            D(100),
            [("use", 51), ("use", 40), ("refund", 0), ("use", 60)],
        ),
        (
            reservation("standard", {"unitPrice": "0.000000000001"}),
            D(2),
            [("use", D("0.5")), ("use", D("0.5")), ("refund", 1), ("use", D("1.5"))],
        ),
    ],
)
def test_a_hold_used_up_after_refunds_has_charged_exactly_what_it_reserved(hold, reserved, uses):
    charged = consume(hold, reserved, [(kind, D(v) if kind == "use" else v) for kind, v in uses])

    assert sum((charge for charge in charged if charge is not None), D(0)) == hold.amount(reserved)


@pytest.mark.parametrize(
    ("consumed", "quantity", "remaining_amount", "expected"),
    [
        # R(c+q) - R(c) = 0.05, less than what is left: charged as priced
        (D(0), D(5), D("0.18"), D("0.05")),
        # never more than what is left
        (D(0), D(5), D("0.03"), D("0.03")),
        (D(15), D(4), D("0.01"), D("0.01")),
        # the use that takes every unit left takes exactly what is left, whatever R says
        (D(15), D(5), D("0.04"), D("0.04")),
        (D(15), D(5), D("0.07"), D("0.07")),
        (D(0), D(20), D("0.2"), D("0.2")),
        # more than is left is the caller's to refuse; priced as every unit left
        (D(15), D(6), D("0.04"), D("0.04")),
        (D(20), D(0), D(0), D(0)),
        (D(3), D(0), D("0.15"), D(0)),
    ],
)
def test_a_hold_charge_is_capped_by_what_is_left_and_the_last_use_takes_it_all(
    consumed, quantity, remaining_amount, expected
):
    hold = reservation("graduated", GRADUATED, units_before="90")

    result = reservation_charge(
        hold, reserved=D(20), consumed=consumed, quantity=quantity, remaining_amount=remaining_amount
    )

    assert result.amount == expected


def test_a_hold_charge_is_never_negative_where_a_price_falls_with_the_quantity():
    # a volume price (no longer instant, but stored holds may still carry one) falls past 100 units
    falling = {"tiers": [{"upTo": "100", "unitPrice": "0.01"}, {"upTo": None, "unitPrice": "0.005"}]}
    hold = reservation("volume", falling)

    result = reservation_charge(hold, reserved=D(200), consumed=D(100), quantity=D(1), remaining_amount=D(1))

    assert hold.amount(D(101)) < hold.amount(D(100))
    assert result.amount == D(0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"consumed": D(21)}, ValueError, "consumed .21. must not exceed reserved .20."),
        ({"quantity": D(-1)}, ValueError, "quantity must be 0 or more"),
        ({"remaining_amount": D("-0.01")}, ValueError, "remaining_amount must be 0 or more"),
        ({"quantity": 1.5}, TypeError, "quantity must be a Decimal or an int, not float"),
    ],
)
def test_a_hold_charge_refuses_what_it_cannot_price(kwargs, error, match):
    arguments = {"reserved": D(20), "consumed": D(0), "quantity": D(1), "remaining_amount": D(1), **kwargs}

    with pytest.raises(error, match=match):
        reservation_charge(reservation("standard", {"unitPrice": "1"}), **arguments)
