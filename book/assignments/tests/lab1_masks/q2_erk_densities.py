OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q2_erk_densities',
    'points': 3,
    'suites': [   {   'cases': [{'code': '>>> d = erk_densities([(100, 784), (10, 100)], 0.1)\n>>> assert len(d) == 2 and d[1] > d[0]\n', 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
