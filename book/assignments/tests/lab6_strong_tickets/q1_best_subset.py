OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q1_best_subset',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> _sel, _err = best_subset(np.array([0.5, 0.25, -0.1]), 0.4)\n>>> assert _err < 1e-12 and np.asarray(_sel).tolist() == [True, False, True]\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
