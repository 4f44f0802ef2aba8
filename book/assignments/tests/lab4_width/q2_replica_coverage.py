OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q2_replica_coverage',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> _m = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)\n>>> assert abs(float(replica_coverage(_m, 2)) - 0.5) < 1e-12\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
