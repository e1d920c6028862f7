//! Generator of `{"Favorite Car": "..."}` messages. Settings (optional):
//! `{"values": ["Ford Escape"]}` replaces the built-in list, `{"field": "car"}` the field name.

const CARS: &[&str] = &[
    "Ford Escape",
    "Toyota Corolla",
    "Honda Civic",
    "Tesla Model 3",
    "Volkswagen Golf",
    "Subaru Outback",
    "Mazda MX-5",
    "Volvo XC60",
    "BMW 3 Series",
    "Hyundai Ioniq 5",
    "Kia Niro",
    "Renault Clio",
];

sdk::pick_one_generator!(Cars, "cars", "Favorite Car", CARS);
