from dataclasses import dataclass
@dataclass
class DMRGOptions:
    pass
def run_dmrg(problem, options):
    raise NotImplementedError
