OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q1_width_factor',
    'points': 2,
    'suites': [   {   'cases': [{'code': '>>> assert abs(width_factor(0.5) - 1 / math.log(2)) < 1e-12\n', 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
