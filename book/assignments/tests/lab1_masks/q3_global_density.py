OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q3_global_density',
    'points': 2,
    'suites': [   {   'cases': [{'code': ">>> assert global_density({'a': torch.ones(2, 2, dtype=torch.bool), 'b': torch.zeros(2, 2, dtype=torch.bool)}) == 0.5\n", 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
