OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q1_mean_ci',
    'points': 3,
    'suites': [   {   'cases': [{'code': '>>> _m, _h = mean_ci([0.9, 0.92, 0.94])\n>>> assert abs(_m - 0.92) < 1e-12 and _h > 0\n', 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
