OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q1_expected_isolated',
    'points': 2,
    'suites': [   {   'cases': [{'code': '>>> assert abs(expected_isolated(100, 1, 0.5) - 50.0) < 1e-09\n', 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
