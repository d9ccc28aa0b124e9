import Engine
print("BLAS: \(BLAS.configuration), threads \(BLAS.threads)")
