//! Generator of `{"Favorite Language": "..."}` messages. Settings (optional):
//! `{"values": ["Rust", "Zig"]}` replaces the built-in list, `{"field": "language"}` the field name.

const LANGUAGES: &[&str] = &[
    "Rust",
    "Python",
    "Go",
    "Java",
    "JavaScript",
    "TypeScript",
    "C",
    "C++",
    "C#",
    "Kotlin",
    "Swift",
    "Ruby",
    "Haskell",
    "Elixir",
    "Scala",
    "Zig",
];

sdk::pick_one_generator!(Langs, "langs", "Favorite Language", LANGUAGES);
