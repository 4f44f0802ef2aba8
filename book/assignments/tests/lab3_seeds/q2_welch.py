OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q2_welch',
    'points': 3,
    'suites': [   {   'cases': [{'code': '>>> _t, _p = welch_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])\n>>> assert abs(_t) < 1e-12 and abs(_p - 1.0) < 1e-09\n', 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
