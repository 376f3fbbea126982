"""Annual statistics direct reporting (检验检测统计直报): the year's survey, each legal entity's
filing, its review, the checks only this registry can make, and the national tables."""
